# Reference logits from Hugging Face transformers (and PEFT) for the tiny model folders, for a
# machine with torch + transformers + peft. NOT YET RUN: no GPU machine was lent to the task that
# wrote it. Output JSON: chat text, token ids, float64 logits at three positions, greedy tokens.
# Usage: python3 gpu-runner/test-fixtures/hf_reference.py <models dir> <out json> [adapter dir ...]
import json, sys
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

models_dir, out_path = sys.argv[1], sys.argv[2]
adapters = sys.argv[3:]
out = {"transformers": transformers.__version__, "torch": torch.__version__, "models": {}, "adapters": {}}
messages = [{"role": "user", "content": "What is 12 + 35? Please reason step by step."}]


def pick(logits, positions):
    return {str(p): [round(float(x), 6) for x in logits[p].tolist()] for p in positions}


for fam in ["qwen2", "qwen3", "llama"]:
    d = f"{models_dir}/tiny-{fam}"
    tok = AutoTokenizer.from_pretrained(d)
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt_ids = tok(text, add_special_tokens=False)["input_ids"]
    answer = "The answer is 47."
    answer_ids = tok(answer, add_special_tokens=False)["input_ids"]
    ids = prompt_ids + answer_ids
    model = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float64, attn_implementation="eager").eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
        greedy = model.generate(torch.tensor([prompt_ids]), max_new_tokens=12, do_sample=False,
                                eos_token_id=None, pad_token_id=0, min_new_tokens=12)[0][len(prompt_ids):].tolist()
    positions = [0, len(prompt_ids) - 1, len(ids) - 1]
    out["models"][fam] = {
        "chat_text": text, "prompt_ids": prompt_ids, "answer": answer, "answer_ids": answer_ids,
        "decoded": tok.decode(ids), "positions": positions, "logits": pick(logits, positions),
        "greedy12": greedy,
    }
    print(fam, len(ids), logits.shape, greedy)

if adapters:
    from peft import PeftModel
    for ad in adapters:
        cfg = json.load(open(f"{ad}/adapter_config.json"))
        fam = cfg["base_model_name_or_path"].rstrip("/").split("tiny-")[-1]
        base = AutoModelForCausalLM.from_pretrained(f"{models_dir}/tiny-{fam}", torch_dtype=torch.float64,
                                                    attn_implementation="eager")
        m = PeftModel.from_pretrained(base, ad).eval()
        ids = out["models"][fam]["prompt_ids"] + out["models"][fam]["answer_ids"]
        with torch.no_grad():
            logits = m(torch.tensor([ids])).logits[0]
        positions = out["models"][fam]["positions"]
        out["adapters"][ad.rstrip("/").split("/")[-1]] = {"family": fam, "positions": positions,
                                                          "logits": pick(logits, positions)}
        print("adapter", ad, fam)

json.dump(out, open(out_path, "w"))
