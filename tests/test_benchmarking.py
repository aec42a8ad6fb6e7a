import torch

from mlip.benchmarking import count_aten_ops


def test_count_aten_ops_counts_computing_ops_not_views():
    a, b = torch.randn(3, 4), torch.randn(3, 4, requires_grad=True)
    assert count_aten_ops(lambda: (a * b).sum()) == 2
    assert count_aten_ops(lambda: a.view(-1).unsqueeze(0).t()) == 0
    # backward ops are counted too: mul's gradient needs one more mul (plus the seed and the expand of sum)
    assert count_aten_ops(lambda: torch.autograd.grad((a * b).sum(), b)) > 2
