"""The training model: MiniCPM-SALA exactly as tools/reference/sala_reference.py and the
C++ engine compute it (docs/MODEL-SEMANTICS.md, sparse layers in `always_sparse` mode, the
server's default), written for training speed.

* Same tensor names as the checkpoint (model.embed_tokens.weight, model.layers.{i}.*,
  model.norm.weight, lm_head.weight) and the same config.json (mixer_types, sparse_config),
  so export.py only writes state_dict() as safetensors.
* Lightning layers: chunked form (chunk 64) of o_p = s * sum_{t<=p} g^(p-t) (q_p.k_t) v_t,
  all in fp32 (inputs upcast), decay powers exp(-lambda*n) evaluated directly.
* Sparse layers: InfLLM-v2 stage 1 (K1/K2 window means, K2-LSE normaliser, sum over the
  query heads of a group, max over the K1 windows overlapping a block, forced init + local
  blocks, top-k over causal blocks with ties to the lower index) in fp32 without gradient
  (a hard top-k, as in InfLLM-v2), then softmax attention restricted to the selected blocks:
    - "masked": a plain [T, T] masked softmax (CPU, tests, short sequences);
    - "flex":   torch.nn.attention.flex_attention with a mask_mod reading the per-(query,
                group) block-selection bitmap (CUDA, PyTorch >= 2.5).
  Queries whose causal blocks all fit in topk_total attend densely (exact: every block is
  selected); a sequence with T <= topk_total * block_size is dense throughout.

Works on torch 1.13 (CPU path) and torch 2.x.
"""

import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

SPARSE = "minicpm4"
LIGHTNING = "lightning-attn"

# Tome's small model (docs/MODEL.md). 8 layers S L L S L L L S.
DEFAULT_CONFIG = {
    "architectures": ["MiniCPMSALAForCausalLM"],
    "model_type": "minicpm_sala",
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 8,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "lightning_nh": 4,
    "lightning_nkv": 4,
    "lightning_head_dim": 64,
    "lightning_scale": "1/sqrt(d)",
    "lightning_use_rope": True,
    "attn_use_rope": False,
    "qk_norm": True,
    "use_output_norm": True,
    "use_output_gate": True,
    "attn_use_output_gate": True,
    "attention_bias": False,
    "hidden_act": "silu",
    "vocab_size": 4096,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "max_position_embeddings": 1048576,
    "tie_word_embeddings": False,
    "scale_emb": 12,
    "scale_depth": 1.4,
    "dim_model_base": 256,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 2,
    "mixer_types": [SPARSE, LIGHTNING, LIGHTNING, SPARSE, LIGHTNING, LIGHTNING, LIGHTNING,
                    SPARSE],
    "sparse_config": {"kernel_size": 32, "kernel_stride": 16, "init_blocks": 1,
                      "block_size": 64, "window_size": 256, "topk": 16, "use_nope": False,
                      "dense_len": 8192},
    "torch_dtype": "bfloat16",
}


class Config:
    """The keys of config.json the model uses (same defaults as the reference)."""

    def __init__(self, d):
        self.raw = dict(d)
        self.hidden_size = int(d["hidden_size"])
        self.intermediate_size = int(d["intermediate_size"])
        self.num_hidden_layers = int(d["num_hidden_layers"])
        self.num_attention_heads = int(d["num_attention_heads"])
        self.num_key_value_heads = int(d.get("num_key_value_heads", self.num_attention_heads))
        hd = d.get("head_dim")
        self.head_dim = int(hd) if hd is not None else self.hidden_size // self.num_attention_heads
        self.lightning_nh = int(d.get("lightning_nh") or self.num_attention_heads)
        self.lightning_head_dim = int(d.get("lightning_head_dim") or self.head_dim)
        self.rms_norm_eps = float(d.get("rms_norm_eps", 1e-6))
        self.rope_theta = float(d.get("rope_theta", 10000.0))
        self.vocab_size = int(d["vocab_size"])
        self.scale_emb = float(d.get("scale_emb", 1.0))
        self.scale_depth = float(d.get("scale_depth", 1.0))
        self.dim_model_base = float(d.get("dim_model_base", self.hidden_size))
        self.tie_word_embeddings = bool(d.get("tie_word_embeddings", False))
        self.mixer_types = list(d["mixer_types"])
        sc = dict(d.get("sparse_config") or {})
        self.kernel_size = int(sc.get("kernel_size", 32))
        self.kernel_stride = int(sc.get("kernel_stride", 16))
        self.init_blocks = int(sc.get("init_blocks", 1))
        self.block_size = int(sc.get("block_size", 64))
        self.window_size = int(sc.get("window_size", 2048))
        self.topk = int(sc.get("topk", 64))
        if len(self.mixer_types) != self.num_hidden_layers:
            raise ValueError("mixer_types has %d entries for %d layers"
                             % (len(self.mixer_types), self.num_hidden_layers))
        if self.kernel_size % self.kernel_stride or self.block_size % self.kernel_stride:
            raise ValueError("sparse_config: kernel_size and block_size must be multiples of "
                             "kernel_stride")

    @property
    def local_blocks(self):
        return self.window_size // self.block_size

    @property
    def topk_total(self):
        return self.topk + self.local_blocks

    @property
    def residual_scale(self):
        return self.scale_depth / math.sqrt(self.num_hidden_layers)

    @property
    def logit_divisor(self):
        return self.hidden_size / self.dim_model_base

    def to_json(self):
        return json.dumps(self.raw, indent=2)


# ======================================================================================
# Building blocks
# ======================================================================================

def rms_norm(x, w, eps):
    x = x.float()
    return (x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)) * w.float()


def alibi_slopes(n):
    """ALiBi slopes (MODEL-SEMANTICS, Lightning layers), Python double."""
    def pow2(m):
        start = 2.0 ** (-8.0 / m)
        return [start ** (i + 1) for i in range(m)]
    if n & (n - 1) == 0:
        return pow2(n)
    c = 2 ** int(math.floor(math.log2(n)))
    return pow2(c) + alibi_slopes(2 * c)[0::2][: n - c]


def lightning_slopes(n):
    """lambda_h rounded to fp32 (the decays use these exact values)."""
    return [float(torch.tensor(v, dtype=torch.float32)) for v in alibi_slopes(n)]


def rope_cos_sin(T, dim, theta, device):
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim))
    ang = torch.arange(T, device=device).to(torch.float32)[:, None] * inv_freq[None, :]
    emb = torch.cat([ang, ang], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def lightning_chunked(q, k, v, slopes, scale, chunk=64):
    """o_p = scale * sum_{t<=p} exp(-lambda_h (p-t)) (q_p.k_t) v_t for q, k, v [B, H, T, d]
    (fp32), in chunks: intra-chunk decay-masked products plus the state carried between
    chunks, S_c = sum_{t < start of chunk c} g^(start-1-t) k_t v_t^T, computed for all
    chunks at once from the per-chunk sums (a lower-triangular decay matrix over chunks)."""
    B, H, T, d = q.shape
    dv = v.shape[-1]
    C = chunk
    n = (T + C - 1) // C
    pad = n * C - T
    if pad:
        q = F.pad(q, (0, 0, 0, pad))
        k = F.pad(k, (0, 0, 0, pad))
        v = F.pad(v, (0, 0, 0, pad))
    dev = q.device
    lam = torch.tensor(slopes, dtype=torch.float64, device=dev)                 # [H]
    i = torch.arange(C, dtype=torch.float64, device=dev)
    diff = i[:, None] - i[None, :]
    intra = (torch.exp(-lam[:, None, None] * diff.clamp(min=0)) * (diff >= 0)).float()  # [H,C,C]
    w_in = torch.exp(-lam[:, None] * (C - 1 - i)[None, :]).float()              # [H, C]
    w_out = torch.exp(-lam[:, None] * (i + 1)[None, :]).float()                 # [H, C]
    c = torch.arange(n, dtype=torch.float64, device=dev)
    m = c[:, None] - 1 - c[None, :]
    carry = (torch.exp(-lam[:, None, None] * C * m.clamp(min=0)) * (m >= 0)).float()  # [H,n,n]

    qc = q.reshape(B, H, n, C, d) * scale
    kc = k.reshape(B, H, n, C, d)
    vc = v.reshape(B, H, n, C, dv)
    scores = qc @ kc.transpose(-1, -2)                                           # [B,H,n,C,C]
    o = (scores * intra[None, :, None]) @ vc                                     # [B,H,n,C,dv]
    U = (kc * w_in[None, :, None, :, None]).transpose(-1, -2) @ vc               # [B,H,n,d,dv]
    S = torch.matmul(carry[None], U.reshape(B, H, n, d * dv)).reshape(B, H, n, d, dv)
    o = o + (qc * w_out[None, :, None, :, None]) @ S
    return o.reshape(B, H, n * C, dv)[:, :, :T]


# ---------------------------------------------------------------------------- sparse
def compress_keys(k, kernel, stride):
    """Window means k[..., s*j : s*j+kernel, :] over complete windows. k [B, G, T, d]."""
    T = k.shape[2]
    if T < kernel:
        return k.new_zeros(k.shape[0], k.shape[1], 0, k.shape[3])
    return k.unfold(2, kernel, stride).mean(dim=-1)                              # [B,G,n,d]


@torch.no_grad()
def select_blocks(q, k, cfg, scale, q_chunk=2048):
    """Block selection of every query (MODEL-SEMANTICS "Sparse layers", always_sparse).
    q [B, Hq, T, d], k [B, G, T, d] (any float dtype; computed in fp32).
    Returns sel [B, G, T, nb] bool: block b is read by the queries at p of group g."""
    q = q.float()
    k = k.float()
    B, Hq, T, d = q.shape
    G = k.shape[1]
    Hg = Hq // G
    k1, s1, Bk = cfg.kernel_size, cfg.kernel_stride, cfg.block_size
    k2, s2 = 4 * k1, 4 * s1
    nb = (T + Bk - 1) // Bk
    K1 = compress_keys(k, k1, s1)                                                 # [B,G,n1,d]
    K2 = compress_keys(k, k2, s2)
    n1, n2 = K1.shape[2], K2.shape[2]
    dev = q.device
    r = Bk // s1                       # K1 windows starting per block
    m = (k1 - 1) // s1                 # windows starting before a block that overlap it
    L = r + m                          # windows overlapping a block: j = r*b - m .. r*b + r - 1
    need = r * (nb - 1) + L
    qg = q.reshape(B, G, Hg, T, d)
    blocks = torch.arange(nb, device=dev)
    topk_total = cfg.topk_total
    K = min(topk_total, nb)
    sel = torch.zeros(B, G, T, nb, dtype=torch.bool, device=dev)
    for p0 in range(0, T, q_chunk):
        p1 = min(T, p0 + q_chunk)
        p = torch.arange(p0, p1, device=dev)
        qq = qg[:, :, :, p0:p1]                                                   # [B,G,Hg,c,d]
        if n2 > 0:
            vis2 = (s2 * torch.arange(n2, device=dev)[None, :] + k2) <= (p[:, None] + 1)
            l2 = (qq @ K2[:, :, None].transpose(-1, -2)) * scale                  # [B,G,Hg,c,n2]
            lse2 = torch.logsumexp(l2.masked_fill(~vis2, -math.inf), dim=-1)     # [B,G,Hg,c]
        else:
            lse2 = torch.full(qq.shape[:-1], -math.inf, device=dev)
        if n1 > 0:
            vis1 = (s1 * torch.arange(n1, device=dev)[None, :] + k1) <= (p[:, None] + 1)
            l1 = (qq @ K1[:, :, None].transpose(-1, -2)) * scale                  # [B,G,Hg,c,n1]
            sc = torch.exp(l1 - lse2[..., None]).sum(dim=2)                       # [B,G,c,n1]
            sc = sc.masked_fill(~vis1, -math.inf)
            # pool: block b <- max over windows r*b-m .. r*b+r-1 (clipped to 0..n1-1)
            left = m
            right = max(0, need - m - n1)
            scp = F.pad(sc, (left, right), value=-math.inf)[..., :need]
            pooled = scp.unfold(-1, L, r).max(dim=-1).values                     # [B,G,c,nb]
        else:
            pooled = torch.full((B, G, p1 - p0, nb), -math.inf, device=dev)
        bp = p // Bk
        causal = blocks[None, :] <= bp[:, None]                                  # [c, nb]
        forced = causal & ((blocks[None, :] < cfg.init_blocks) |
                           (blocks[None, :] >= (bp[:, None] - cfg.local_blocks)))
        score = pooled.masked_fill(forced, math.inf).masked_fill(~causal, -math.inf)
        order = torch.sort(score, dim=-1, descending=True, stable=True).indices[..., :K]
        keep = torch.clamp(bp + 1, max=topk_total)                               # [c]
        ok = torch.arange(K, device=dev)[None, :] < keep[:, None]                # [c, K]
        chunk_sel = torch.zeros(B, G, p1 - p0, nb, dtype=torch.bool, device=dev)
        chunk_sel.scatter_(-1, order, ok.expand(B, G, p1 - p0, K))
        sel[:, :, p0:p1] = chunk_sel
    return sel


def masked_attention(q, k, v, token_mask, scale):
    """Softmax attention with GQA; q [B,Hq,T,d], k/v [B,G,T,d], token_mask [B or 1, G or 1,
    T, T] bool (True = may attend)."""
    B, Hq, T, d = q.shape
    G = k.shape[1]
    Hg = Hq // G
    qg = q.reshape(B, G, Hg, T, d)
    logits = (qg @ k[:, :, None].transpose(-1, -2)) * scale                      # [B,G,Hg,T,T]
    logits = logits.masked_fill(~token_mask[:, :, None], -math.inf)
    p = torch.softmax(logits.float(), dim=-1).to(v.dtype)
    return (p @ v[:, :, None]).reshape(B, Hq, T, v.shape[-1])


_FLEX = {}


def _flex():
    if "fn" not in _FLEX:
        from torch.nn.attention.flex_attention import BlockMask, flex_attention
        _FLEX["fn"] = torch.compile(flex_attention, dynamic=False)
        _FLEX["BlockMask"] = BlockMask
    return _FLEX["fn"], _FLEX["BlockMask"]


def _make_mask_mod(sel, Hg, blk):
    def mask_mod(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & sel[b, h // Hg, q_idx, kv_idx // blk]
    return mask_mod


def flex_block_sparse(q, k, v, sel, blk, tile=128):
    """Stage 2 with FlexAttention. q [B,Hq,T,d], k/v [B,G,T,d], sel [B,G,T,nb]."""
    flex, BlockMask = _flex()
    B, Hq, T, d = q.shape
    G = k.shape[1]
    Hg = Hq // G
    Tp = (T + tile - 1) // tile * tile
    nbp = Tp // blk
    if Tp != T:
        pad = Tp - T
        q = F.pad(q, (0, 0, 0, pad))
        k = F.pad(k, (0, 0, 0, pad))
        v = F.pad(v, (0, 0, 0, pad))
    selp = torch.zeros(B, G, Tp, nbp, dtype=torch.bool, device=q.device)
    selp[:, :, :T, :sel.shape[-1]] = sel
    selp[:, :, T:] = True                                      # padded queries: no empty rows
    per = tile // blk
    tiles = selp.reshape(B, G, Tp // tile, tile, nbp).any(dim=3)
    tiles = tiles.reshape(B, G, Tp // tile, nbp // per, per).any(dim=-1)      # [B,G,nq,nk]
    tiles = tiles.repeat_interleave(Hg, dim=1)
    kv_num = tiles.sum(dim=-1, dtype=torch.int32)
    kv_idx = torch.argsort(tiles.to(torch.int8), dim=-1, descending=True,
                           stable=True).to(torch.int32)
    bm = BlockMask.from_kv_blocks(kv_num, kv_idx, BLOCK_SIZE=tile,
                                  mask_mod=_make_mask_mod(selp, Hg, blk))
    out = flex(q, k, v, block_mask=bm, enable_gqa=True)
    return out[:, :, :T]


def dense_causal(q, k, v, scale, impl):
    T = q.shape[2]
    if impl != "masked" and hasattr(F, "scaled_dot_product_attention"):
        Hg = q.shape[1] // k.shape[1]
        kk = k.repeat_interleave(Hg, dim=1)
        vv = v.repeat_interleave(Hg, dim=1)
        return F.scaled_dot_product_attention(q, kk, vv, is_causal=True)
    p = torch.arange(T, device=q.device)
    causal = (p[None, :] <= p[:, None])[None, None]
    return masked_attention(q, k, v, causal, scale)


# ======================================================================================
# Modules (names as in the checkpoint)
# ======================================================================================

class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D, Fd = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = nn.Linear(D, Fd, bias=False)
        self.up_proj = nn.Linear(D, Fd, bias=False)
        self.down_proj = nn.Linear(Fd, D, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class SparseAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        D, d = cfg.hidden_size, cfg.head_dim
        self.Hq, self.G, self.d = cfg.num_attention_heads, cfg.num_key_value_heads, d
        self.q_proj = nn.Linear(D, self.Hq * d, bias=False)
        self.k_proj = nn.Linear(D, self.G * d, bias=False)
        self.v_proj = nn.Linear(D, self.G * d, bias=False)
        self.o_proj = nn.Linear(self.Hq * d, D, bias=False)
        self.o_gate = nn.Linear(D, self.Hq * d, bias=False)

    def forward(self, a, impl, aux=None):
        cfg = self.cfg
        B, T, _ = a.shape
        q = self.q_proj(a).view(B, T, self.Hq, self.d).transpose(1, 2)
        k = self.k_proj(a).view(B, T, self.G, self.d).transpose(1, 2)
        v = self.v_proj(a).view(B, T, self.G, self.d).transpose(1, 2)
        scale = 1.0 / math.sqrt(self.d)
        if T <= cfg.topk_total * cfg.block_size:
            o = dense_causal(q, k, v, scale, impl)          # every causal block is selected
        else:
            sel = select_blocks(q, k, cfg, scale)
            if aux is not None:
                aux.append(sel)
            if impl == "flex":
                dt = torch.bfloat16 if (q.is_cuda and torch.is_autocast_enabled()) else q.dtype
                o = flex_block_sparse(q.to(dt), k.to(dt), v.to(dt), sel, cfg.block_size)
            else:
                tok_block = torch.arange(T, device=a.device) // cfg.block_size
                p = torch.arange(T, device=a.device)
                mask = sel[:, :, :, tok_block] & (p[None, :] <= p[:, None])[None, None]
                o = masked_attention(q, k, v, mask, scale)
        o = o.transpose(1, 2).reshape(B, T, self.Hq * self.d)
        o = o * torch.sigmoid(self.o_gate(a))
        return self.o_proj(o)


class LightningAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        D = cfg.hidden_size
        self.H, self.d = cfg.lightning_nh, cfg.lightning_head_dim
        Ld = self.H * self.d
        self.q_proj = nn.Linear(D, Ld, bias=False)
        self.k_proj = nn.Linear(D, Ld, bias=False)
        self.v_proj = nn.Linear(D, Ld, bias=False)
        self.o_proj = nn.Linear(Ld, D, bias=False)
        self.z_proj = nn.Linear(D, Ld, bias=False)
        self.q_norm = RMSNorm(self.d, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(self.d, cfg.rms_norm_eps)
        self.o_norm = RMSNorm(Ld, cfg.rms_norm_eps)
        self.slopes = lightning_slopes(self.H)

    def forward(self, a, rope):
        B, T, _ = a.shape
        H, d = self.H, self.d
        q = self.q_norm(self.q_proj(a).view(B, T, H, d)).transpose(1, 2)   # fp32
        k = self.k_norm(self.k_proj(a).view(B, T, H, d)).transpose(1, 2)
        v = self.v_proj(a).view(B, T, H, d).transpose(1, 2).float()
        cos, sin = rope
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        with _no_autocast(a.device):
            o = lightning_chunked(q.float(), k.float(), v, self.slopes, 1.0 / math.sqrt(d))
        o = o.transpose(1, 2).reshape(B, T, H * d)
        o = self.o_norm(o)
        o = o * torch.sigmoid(self.z_proj(a).float())
        return self.o_proj(o)


class _no_autocast:
    def __init__(self, device):
        self.ctx = None
        if device.type == "cuda":
            self.ctx = torch.autocast(device_type="cuda", enabled=False)

    def __enter__(self):
        if self.ctx is not None:
            self.ctx.__enter__()

    def __exit__(self, *a):
        if self.ctx is not None:
            self.ctx.__exit__(*a)


class DecoderLayer(nn.Module):
    def __init__(self, cfg, mixer):
        super().__init__()
        self.mixer_type = mixer
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = SparseAttention(cfg) if mixer == SPARSE else LightningAttention(cfg)
        self.mlp = MLP(cfg)


class Backbone(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(cfg, t) for t in cfg.mixer_types])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class SalaForCausalLM(nn.Module):
    def __init__(self, cfg, attn_impl="auto"):
        super().__init__()
        if isinstance(cfg, dict):
            cfg = Config(cfg)
        self.cfg = cfg
        self.model = Backbone(cfg)
        if not cfg.tie_word_embeddings:
            self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.attn_impl = attn_impl
        self.checkpoint_layers = False

    def impl_for(self, device):
        if self.attn_impl != "auto":
            return self.attn_impl
        if device.type == "cuda":
            import importlib.util
            try:
                found = importlib.util.find_spec("torch.nn.attention.flex_attention")
            except ImportError:
                found = None
            return "flex" if found else "masked"
        return "masked"

    def init_weights(self, seed=0, std=0.02):
        g = torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():
            with torch.no_grad():
                if name.endswith("norm.weight"):
                    p.fill_(1.0)
                else:
                    p.copy_(torch.randn(p.shape, generator=g) * std)

    def _layer(self, layer, h, rope, impl, aux):
        alpha = self.cfg.residual_scale
        a = layer.input_layernorm(h)
        if layer.mixer_type == SPARSE:
            m = layer.self_attn(a, impl, aux)
        else:
            m = layer.self_attn(a, rope)
        h = h + alpha * m
        b = layer.post_attention_layernorm(h)
        return h + alpha * layer.mlp(b)

    def hidden(self, ids, return_hidden=False, aux=None):
        """Final-norm input h [B, T, D] (fp32) and, optionally, every layer's output."""
        cfg = self.cfg
        if ids.dim() == 1:
            ids = ids[None]
        impl = self.impl_for(ids.device)
        T = ids.shape[1]
        h = self.model.embed_tokens(ids).float() * cfg.scale_emb
        rope = rope_cos_sin(T, cfg.lightning_head_dim, cfg.rope_theta, ids.device)
        hs = []
        for layer in self.model.layers:
            if self.checkpoint_layers and self.training and torch.is_grad_enabled():
                from torch.utils.checkpoint import checkpoint
                h = checkpoint(self._layer, layer, h, rope, impl, None, use_reentrant=False)
            else:
                h = self._layer(layer, h, rope, impl, aux)
            if return_hidden:
                hs.append(h)
        return h, hs

    def logits_from_hidden(self, h):
        y = self.model.norm(h) / self.cfg.logit_divisor
        w = self.model.embed_tokens.weight if self.cfg.tie_word_embeddings else self.lm_head.weight
        if torch.is_autocast_enabled():
            return F.linear(y, w)
        return F.linear(y.to(w.dtype), w)

    def forward(self, ids, return_hidden=False, aux=None):
        h, hs = self.hidden(ids, return_hidden, aux)
        logits = self.logits_from_hidden(h)
        return (logits, hs) if return_hidden else logits

    def num_parameters(self):
        return sum(p.numel() for p in self.parameters())
