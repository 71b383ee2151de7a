"""A predictor with ``fp32_below`` runs small passes in fp32 and larger ones in its chosen precision."""

import torch

from keepfit.train.predict import Predictor


def test_small_passes_run_in_fp32_and_large_ones_in_bf16(trained):
    texts = ["good great film", "awful bad", "fine", "nice", "dull boring", "lovely"]
    fp32 = Predictor(trained.model_dir, precision="fp32")
    mixed = Predictor(trained.model_dir, precision="bf16")
    mixed.fp32_below = 4
    one = texts[:1]
    assert torch.equal(mixed.logits(one), fp32.logits(one))  # one text: exactly the fp32 pass
    bf16_pass = mixed.logits(texts)
    assert not torch.equal(bf16_pass, fp32.logits(texts))  # six texts: bf16, so not bit-identical
    assert torch.allclose(bf16_pass, fp32.logits(texts), atol=0.1)


def test_bf16_is_chosen_from_the_cpu_flags():
    from keepfit.train.inference import bf16_units_in

    assert bf16_units_in("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f amx_bf16 amx_tile\n") is True
    assert bf16_units_in("flags\t\t: fpu sse avx2 avx512f avx512_bf16\n") is True
    assert bf16_units_in("flags\t\t: fpu sse avx2 avx512f avx512_vnni\n") is False
    assert bf16_units_in("Processor\t: ARMv8\nFeatures\t: fp asimd\n") is None
