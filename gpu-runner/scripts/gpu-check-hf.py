# The PyTorch side of `npm run gpu:check`: Hugging Face transformers on the same random-weight
# checkpoint folder, same batch and lengths. Prints one JSON line. No network (local folder only).
#   python3 gpu-check-hf.py <checkpoint dir> <batch> <prompt len> <new tokens> <train batch> <train seq>
import json, sys, time

import torch
from transformers import AutoModelForCausalLM

path, batch, plen, new, tb, ts = sys.argv[1], *map(int, sys.argv[2:7])
out = {"torch": torch.__version__}
try:
    import transformers

    out["transformers"] = transformers.__version__
except Exception:
    pass
dev = "cuda"
for dtype_name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=dtype, local_files_only=True).to(dev).eval()
    g = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(100, 2900, (batch, plen), generator=g).to(dev)
    kw = dict(do_sample=True, temperature=1.0, top_p=0.95, top_k=0, max_new_tokens=new, min_new_tokens=new, pad_token_id=0)
    with torch.no_grad():
        model.generate(ids[:1], **{**kw, "max_new_tokens": 4, "min_new_tokens": 4})
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.generate(ids, **kw)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    out[f"generate_{dtype_name}_tok_per_s"] = batch * new / wall
    out[f"generate_{dtype_name}_seconds"] = wall
    del model
    torch.cuda.empty_cache()

# one full-precision LoRA-shaped step for scale: frozen base, rank-16 adapters on every Linear
model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, local_files_only=True).to(dev)
for p in model.parameters():
    p.requires_grad_(False)
adapters = []
for mod in model.modules():
    if isinstance(mod, torch.nn.Linear) and mod.out_features != model.config.vocab_size:
        a = torch.nn.Parameter(torch.randn(mod.in_features, 16, device=dev) / mod.in_features**0.5)
        b = torch.nn.Parameter(torch.zeros(16, mod.out_features, device=dev))
        adapters += [a, b]
        mod.register_forward_hook(lambda m, i, o, a=a, b=b: o + (i[0] @ a @ b) * 2.0)
opt = torch.optim.AdamW(adapters, lr=1e-5)
ids = torch.randint(100, 2900, (tb, ts + 1), device=dev)
times = []
for i in range(4):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    loss = model(ids[:, :-1], labels=ids[:, :-1]).loss
    loss.backward()
    opt.step()
    opt.zero_grad()
    torch.cuda.synchronize()
    times.append(time.perf_counter() - t0)
out["lora_step_ms"] = sorted(times[1:])[1] * 1000
out["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
print(json.dumps(out))
