"""Reference numbers for the AdamW and gradient-clipping tests in src/train/optim.rs: the same
steps in PyTorch (torch.optim.AdamW, torch.nn.utils.clip_grad_norm_). Run with the anchors venv:
~/.cache/taskbench-anchors/bin/python scripts/optim_reference.py"""
import torch
torch.set_printoptions(precision=17)
def show(name, t):
    print(name, [float(x) for x in t.detach().flatten()])

# ---- test 1: three AdamW steps, float64, per-step lr, a zero-grad param and a None-grad param
w = torch.tensor([[0.5, -1.25, 2.0], [0.75, -0.3, 1.1]], dtype=torch.float64, requires_grad=True)
b = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64, requires_grad=True)
z = torch.tensor([1.5, -2.5], dtype=torch.float64, requires_grad=True)   # grad is zero every step
n = torch.tensor([3.0, -4.0], dtype=torch.float64, requires_grad=True)   # grad is None every step
late = torch.tensor([0.6, -0.9], dtype=torch.float64, requires_grad=True)  # grad None at step 1 only
opt = torch.optim.AdamW([w, b, z, n, late], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, foreach=False)
gw = [[[0.3, -0.7, 1.9], [0.05, -2.2, 0.6]],
      [[-0.4, 0.1, 1.2], [0.25, -1.7, -0.9]],
      [[0.8, -0.2, 0.0], [-0.35, 0.45, 2.5]]]
gb = [[1.0, -0.5, 0.25], [-0.75, 0.125, 2.0], [0.5, 0.5, -1.5]]
lrs = [1e-2, 5e-3, 2e-2]
gl = [None, [0.7, -0.2], [-0.3, 0.9]]
for s in range(3):
    for g in opt.param_groups: g['lr'] = lrs[s]
    w.grad = torch.tensor(gw[s], dtype=torch.float64)
    b.grad = torch.tensor(gb[s], dtype=torch.float64)
    z.grad = torch.zeros(2, dtype=torch.float64)
    n.grad = None
    late.grad = None if s == 0 else torch.tensor(gl[s], dtype=torch.float64)
    opt.step()
    print("step", s + 1)
    show("w", w); show("b", b); show("z", z); show("n", n); show("late", late)
st = opt.state[w]
show("m_w", st['exp_avg']); show("v_w", st['exp_avg_sq'])

# ---- test 4: clip_grad_norm_
p1 = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
p2 = torch.zeros(3, dtype=torch.float64, requires_grad=True)
p1.grad = torch.tensor([[3.0, -4.0], [1.0, 2.0]], dtype=torch.float64)
p2.grad = torch.tensor([0.5, -1.5, 2.5], dtype=torch.float64)
norm = torch.nn.utils.clip_grad_norm_([p1, p2], max_norm=1.0, foreach=False)
print("clip norm", float(norm)); show("g1", p1.grad); show("g2", p2.grad)
p1.grad = torch.tensor([[0.1, -0.2], [0.05, 0.3]], dtype=torch.float64)
p2.grad = torch.tensor([0.01, -0.02, 0.03], dtype=torch.float64)
norm = torch.nn.utils.clip_grad_norm_([p1, p2], max_norm=1.0, foreach=False)
print("noclip norm", float(norm)); show("g1", p1.grad); show("g2", p2.grad)
