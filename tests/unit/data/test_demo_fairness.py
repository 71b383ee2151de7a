"""The demo data's planted fairness gap: a region column in both weeks, copies of a text share their region, and
a model really does worse on the hard region."""

from __future__ import annotations

import numpy as np

from keepfit.data.demo_data import HARD_REGION, generate_demo_data, generate_next_week


def test_both_weeks_carry_regions_and_copies_keep_theirs():
    week1 = generate_demo_data(2000, seed=0)
    week2 = generate_next_week(week1.frame, 600, seed=1)
    for data in (week1, week2):
        assert set(data.frame["region"]) == {"north", "south", HARD_REGION}
        per_text = data.frame[data.frame["text"].str.strip() != ""].groupby("text")["region"].nunique()
        assert (per_text == 1).all()  # duplicates and conflicting duplicates stay copies of each other
    assert 300 < week1.harder_rows < 700 and week2.harder_rows > 50
    texts = week2.frame[week2.frame["text"].str.strip() != ""]
    repeated = texts.merge(week1.frame, on="text", suffixes=("", "_1"))
    assert len(repeated) and (repeated["region"] == repeated["region_1"]).all()


def test_a_model_does_worse_on_the_hard_region():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    frame = generate_demo_data(2000, seed=0).frame
    frame = frame[frame["text"].str.strip() != ""]
    test = np.random.default_rng(0).uniform(size=len(frame)) < 0.3
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    model = LinearSVC().fit(vec.fit_transform(frame["text"][~test]), frame["intent"][~test])
    right = model.predict(vec.transform(frame["text"][test])) == frame["intent"][test].to_numpy()
    hard = (frame["region"][test] == HARD_REGION).to_numpy()
    assert right[~hard].mean() - right[hard].mean() > 0.05
