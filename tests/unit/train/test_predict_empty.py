from keepfit.train import load_predictor


def test_predicting_no_texts_gives_an_empty_result_not_a_crash(trained):
    preds = load_predictor(trained.model_dir, precision="fp32").predict([])
    assert preds.outputs.shape == (0, len(trained.labels))
    assert preds.top_k_labels == []


def test_logits_of_no_texts_are_an_empty_tensor(trained):
    logits = load_predictor(trained.model_dir, precision="fp32").logits([])
    assert tuple(logits.shape) == (0, len(trained.labels))
