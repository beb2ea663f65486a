"""transformers' DeepseekV3 as an oracle for dslab's whole model (tests/python/test_hf_oracle.py).

usage: .venv/bin/python hf_deepseek_v3.py run  DIR TOKENS.npy LOGITS.npy
       .venv/bin/python hf_deepseek_v3.py make CONFIG.json DIR TOKENS.npy LOGITS.npy
run:  loads the checkpoint folder DIR (config.json + model.safetensors, written by dslab) with
      DeepseekV3ForCausalLM.from_pretrained and writes the logits [B, T, V] of TOKENS [B, T].
make: builds DeepseekV3ForCausalLM from the config (transformers' own random initialisation; the
      expert biases e_score_correction_bias drawn too, which it initialises to zero), saves it to DIR
      with save_pretrained (safetensors) and writes its logits for TOKENS.
The model runs as transformers runs it: its router, RMSNorm and rotary tables compute in float32
whatever the weights' dtype (modeling_deepseek_v3.py casts to float32; with float64 weights its MoE
fails with a dtype mismatch in index_add_), so it runs in float32, eager attention, no download.
Needs the .venv of scripts/peers (torch 2.6, transformers 4.56.2).
"""
import sys

import numpy as np
import torch
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM


def logits(model, tokens_path, out_path):
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(np.load(tokens_path)).long()).logits
    np.save(out_path, out.double().numpy())


def main(argv):
    torch.manual_seed(0)
    if argv[1] == "run":
        _, _, folder, tokens, out = argv
        model = DeepseekV3ForCausalLM.from_pretrained(folder, torch_dtype=torch.float32, attn_implementation="eager")
        logits(model, tokens, out)
    elif argv[1] == "make":
        _, _, config, folder, tokens, out = argv
        cfg = DeepseekV3Config.from_json_file(config)
        cfg._attn_implementation = "eager"
        model = DeepseekV3ForCausalLM(cfg).float()
        with torch.no_grad():
            for name, buf in model.named_buffers():
                if name.endswith("e_score_correction_bias"):
                    buf.normal_(0, 0.1)
            for name, p in model.named_parameters():
                if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                    p.uniform_(0.8, 1.2)  # transformers initialises them to 1: draw them so a mix-up shows
        model.save_pretrained(folder, safe_serialization=True)
        logits(model, tokens, out)
    else:
        sys.exit(f"usage: {argv[0]} run DIR TOKENS LOGITS | make CONFIG DIR TOKENS LOGITS")


if __name__ == "__main__":
    main(sys.argv)
