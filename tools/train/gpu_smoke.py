#!/usr/bin/env python3
"""GPU smoke test: FlexAttention block-sparse stage 2 == the plain masked path (forward and
gradients), and the whole model's logits with impl flex == masked (fp32).

    python3 tools/train/gpu_smoke.py            # on the GPU machine, from the repo root
"""
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__))))
import model as M  # noqa: E402


def rel(a, b):
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


def main():
    dev = torch.device("cuda")
    print("torch", torch.__version__, torch.cuda.get_device_name(), flush=True)
    cfg = M.Config(M.DEFAULT_CONFIG)
    torch.manual_seed(0)
    B, T, Hq, G, d = 1, 2048, 4, 2, 64
    q = torch.randn(B, Hq, T, d, device=dev, requires_grad=True)
    k = (torch.randn(B, G, T, d, device=dev) * 2).requires_grad_()
    v = torch.randn(B, G, T, d, device=dev, requires_grad=True)
    sel = M.select_blocks(q, k, cfg, 1 / math.sqrt(d))
    print("selected blocks per query (last): %d of %d" % (int(sel[0, 0, -1].sum()),
                                                          sel.shape[-1]), flush=True)
    t0 = time.time()
    of = M.flex_block_sparse(q, k, v, sel, cfg.block_size)
    go = torch.randn_like(of)
    gf = torch.autograd.grad(of, (q, k, v), go)
    torch.cuda.synchronize()
    print("flex fp32 fwd+bwd compile+run %.1fs" % (time.time() - t0), flush=True)
    tok_block = torch.arange(T, device=dev) // cfg.block_size
    p = torch.arange(T, device=dev)
    mask = sel[:, :, :, tok_block] & (p[None, :] <= p[:, None])[None, None]
    om = M.masked_attention(q, k, v, mask, 1 / math.sqrt(d))
    gm = torch.autograd.grad(om, (q, k, v), go)
    print("flex vs masked fp32: out %.2e  dq %.2e  dk %.2e  dv %.2e" % (
        rel(of, om), rel(gf[0], gm[0]), rel(gf[1], gm[1]), rel(gf[2], gm[2])), flush=True)
    qb, kb, vb = (x.detach().bfloat16().requires_grad_() for x in (q, k, v))
    ob = M.flex_block_sparse(qb, kb, vb, sel, cfg.block_size)
    print("flex bf16 vs masked fp32: out %.2e" % rel(ob, om), flush=True)
    # whole model, fp32, flex vs masked
    net = M.SalaForCausalLM(M.DEFAULT_CONFIG).to(dev)
    net.init_weights(seed=1, std=0.05)
    net.to(dev)
    ids = torch.randint(3, 4096, (1, T), device=dev)
    with torch.no_grad():
        net.attn_impl = "flex"
        lf = net(ids)
        net.attn_impl = "masked"
        lm = net(ids)
    print("model logits flex vs masked fp32: %.2e" % rel(lf, lm), flush=True)
    ok = rel(of, om) < 1e-4 and rel(lf, lm) < 1e-4
    print("SMOKE", "OK" if ok else "FAIL", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
