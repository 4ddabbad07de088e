# PyTorch eager reference for bench/engine.ts: the same decoder stack (RMSNorm, GQA attention with
# RoPE, SwiGLU MLP), same shapes, fp32, forward + backward + AdamW(clip 1.0), and the bare MatMul
# rate on the same GEMM shapes. Run where torch is installed: python3 bench/engine.py [cuda|cpu]
import math, sys, time
import torch

dev = sys.argv[1] if len(sys.argv) > 1 else ("cuda" if torch.cuda.is_available() else "cpu")
layers, batch, seq, d, heads, kvh, hd, ffn, steps = 2, 4, 128, 512, 8, 4, 64, 1408, 20
T = batch * seq
torch.manual_seed(0)

def sync():
    if dev == "cuda":
        torch.cuda.synchronize()

def rms(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w

inv = 1.0 / 10000 ** (torch.arange(0, hd, 2, device=dev).float() / hd)
fr = torch.arange(seq, device=dev).float()[:, None] * inv
emb = torch.cat([fr, fr], -1)
cos, sin = emb.cos(), emb.sin()

def rope(x):
    x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin

P = []
def p(*shape, ones=False):
    t = torch.ones(*shape, device=dev) if ones else torch.randn(*shape, device=dev) / math.sqrt(shape[0])
    t.requires_grad_(True)
    P.append(t)
    return t

W = [dict(wq=p(d, heads * hd), wk=p(d, kvh * hd), wv=p(d, kvh * hd), wo=p(heads * hd, d), n1=p(d, ones=True),
          n2=p(d, ones=True), w1=p(d, ffn), w3=p(d, ffn), w2=p(ffn, d)) for _ in range(layers)]
mask = torch.full((seq, seq), float("-inf"), device=dev).triu(1)

def forward(x):
    h = x
    for w in W:
        a = rms(h, w["n1"])
        q = rope((a @ w["wq"]).view(batch, seq, heads, hd).transpose(1, 2))
        k = rope((a @ w["wk"]).view(batch, seq, kvh, hd).transpose(1, 2))
        v = (a @ w["wv"]).view(batch, seq, kvh, hd).transpose(1, 2)
        k, v = k.repeat_interleave(heads // kvh, 1), v.repeat_interleave(heads // kvh, 1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
        o = (s.softmax(-1) @ v).transpose(1, 2).reshape(batch, seq, heads * hd)
        h = h + o @ w["wo"]
        m = rms(h, w["n2"])
        h = h + (torch.nn.functional.silu(m @ w["w1"]) * (m @ w["w3"])) @ w["w2"]
    return h

x, y = torch.randn(batch, seq, d, device=dev), torch.randn(batch, seq, d, device=dev)
opt = torch.optim.AdamW(P, lr=1e-4, weight_decay=0.01)
def step():
    opt.zero_grad(set_to_none=True)
    loss = (forward(x) - y).pow(2).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(P, 1.0)
    opt.step()
    return loss

def timed(fn, n):
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(n):
        t0 = time.perf_counter(); fn(); sync(); times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]

proj = 2 * T * d * (2 * heads * hd + 2 * kvh * hd) + 2 * T * d * ffn * 3
attn = 2 * 2 * batch * heads * seq * seq * hd
train_flops = 3 * layers * (proj + attn)
t_step = timed(step, steps)

xs, hs = torch.randn(T, d, device=dev), torch.randn(T, ffn, device=dev)
gw = [torch.randn(d, n, device=dev) for n in (heads * hd, kvh * hd, kvh * hd, d, ffn, ffn)] + [torch.randn(ffn, d, device=dev)]
def gemms():
    for _ in range(layers):
        for i, w in enumerate(gw):
            (hs if i == 6 else xs) @ w
mm_flops = layers * sum(2 * T * w.shape[0] * w.shape[1] for w in gw)
t_mm = timed(gemms, steps)
name = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
print(f"torch {torch.__version__} on {dev} ({name}), fp32, layers={layers} batch={batch} seq={seq} d={d} heads={heads}/{kvh} ffn={ffn}")
print(f"torch bare MatMul: {mm_flops / t_mm / 1e9:.1f} GFLOP/s ({t_mm * 1e3:.2f} ms)")
print(f"torch eager fwd+bwd+AdamW: {t_step * 1e3:.2f} ms/step, {train_flops / t_step / 1e9:.1f} GFLOP/s, efficiency {100 * (train_flops / t_step) / (mm_flops / t_mm):.0f}%")
