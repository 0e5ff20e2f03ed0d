"""Naive PyTorch reference implementation of MiniCPM-SALA (fp32, CPU).

Written from ../shared/design/SALA-MODEL.md (the specification, "spec") and
docs/MODEL-SEMANTICS.md (Tome's binding choices, "semantics"; it wins where the two
differ). Every function favours readability over speed: attention is built as explicit
[T, T] matrices, one head at a time; nothing is chunked, fused or cached. Memory is
O(T^2) per head, so this is meant for sequences up to a few tens of thousands of tokens.

Layout conventions (all tensors torch.float32 unless stated):
    token_ids        [T] int64
    hidden stream h  [T, D]
    per-head q/k/v   [H, T, d]
    lightning state  [H, d_k, d_v]  (rows = key dim, cols = value dim)
    selected blocks  [T, G, topk_total] int32, ascending, padded with -1
Positions are absolute 0..T-1 (one-shot prefill of the whole sequence).

Works with torch 1.13 (no scaled_dot_product_attention used) and torch 2.x.
"""

import json
import math
import os

import numpy as np
import torch

try:  # run as a script from tools/reference or imported as a package module
    import safetensors_io
except ImportError:  # pragma: no cover
    from . import safetensors_io

SPARSE = "minicpm4"
LIGHTNING = "lightning-attn"
MODES = ("hf", "always_sparse")

# Config flags whose value is fixed by the released checkpoint (spec §1.1). The reference
# implements only these values; any other value is refused instead of silently ignored.
_FIXED_FLAGS = {
    "lightning_use_rope": True,
    "attn_use_rope": False,
    "qk_norm": True,
    "use_output_norm": True,
    "use_output_gate": True,
    "attn_use_output_gate": True,
    "attention_bias": False,
    "hidden_act": "silu",
    "rope_scaling": None,
    "lightning_scale": "1/sqrt(d)",
}


# ========================================================================================
# Configuration
# ========================================================================================

class SalaConfig:
    """HF-style config.json of MiniCPM-SALA (spec §1.1), validated."""

    def __init__(self, d):
        self.raw = dict(d)
        self.hidden_size = int(d["hidden_size"])
        self.intermediate_size = int(d["intermediate_size"])
        self.num_hidden_layers = int(d["num_hidden_layers"])
        self.num_attention_heads = int(d["num_attention_heads"])
        self.num_key_value_heads = int(d.get("num_key_value_heads", self.num_attention_heads))
        hd = d.get("head_dim")
        self.head_dim = int(hd) if hd is not None else self.hidden_size // self.num_attention_heads
        # Lightning geometry (semantics: H = lightning_nh default num_attention_heads,
        # d = lightning_head_dim default head_dim).
        nh = d.get("lightning_nh")
        self.lightning_nh = int(nh) if nh is not None else self.num_attention_heads
        nkv = d.get("lightning_nkv")
        self.lightning_nkv = int(nkv) if nkv is not None else self.lightning_nh
        lhd = d.get("lightning_head_dim")
        self.lightning_head_dim = int(lhd) if lhd is not None else self.head_dim
        self.rms_norm_eps = float(d.get("rms_norm_eps", 1e-6))
        self.rope_theta = float(d.get("rope_theta", 10000.0))
        self.vocab_size = int(d["vocab_size"])
        self.scale_emb = float(d.get("scale_emb", 1.0))
        self.scale_depth = float(d.get("scale_depth", 1.0))
        self.dim_model_base = float(d.get("dim_model_base", self.hidden_size))
        self.tie_word_embeddings = bool(d.get("tie_word_embeddings", False))
        self.mixer_types = list(d["mixer_types"])
        sc = dict(d.get("sparse_config") or {})
        self.sparse_config = sc
        self.kernel_size = int(sc.get("kernel_size", 32))
        self.kernel_stride = int(sc.get("kernel_stride", 16))
        self.init_blocks = int(sc.get("init_blocks", 1))
        self.block_size = int(sc.get("block_size", 64))
        self.window_size = int(sc.get("window_size", 2048))
        self.topk = int(sc.get("topk", 64))
        self.dense_len = int(sc.get("dense_len", 8192))
        self.use_nope = bool(sc.get("use_nope", False))  # irrelevant: sparse layers are NoPE
        self.validate()

    # Derived quantities (semantics "Notation").
    @property
    def k1(self):
        return self.kernel_size

    @property
    def s1(self):
        return self.kernel_stride

    @property
    def k2(self):
        return 4 * self.kernel_size

    @property
    def s2(self):
        return 4 * self.kernel_stride

    @property
    def local_blocks(self):
        """window/B (floor division; spec: 2048/64 = 32)."""
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

    @property
    def sparse_layers(self):
        return [i for i, t in enumerate(self.mixer_types) if t == SPARSE]

    @property
    def lightning_layers(self):
        return [i for i, t in enumerate(self.mixer_types) if t == LIGHTNING]

    def validate(self):
        def bad(msg):
            raise ValueError("invalid SALA config: " + msg)

        if len(self.mixer_types) != self.num_hidden_layers:
            bad("mixer_types has %d entries, num_hidden_layers is %d"
                % (len(self.mixer_types), self.num_hidden_layers))
        for i, t in enumerate(self.mixer_types):
            if t not in (SPARSE, LIGHTNING):
                bad("mixer_types[%d] = %r (expected %r or %r)" % (i, t, SPARSE, LIGHTNING))
        if self.num_attention_heads % self.num_key_value_heads != 0:
            bad("num_attention_heads %d not divisible by num_key_value_heads %d"
                % (self.num_attention_heads, self.num_key_value_heads))
        if self.lightning_nkv != self.lightning_nh:
            bad("lightning_nkv %d != lightning_nh %d: lightning layers are MHA only"
                % (self.lightning_nkv, self.lightning_nh))
        for key, want in _FIXED_FLAGS.items():
            if key in self.raw and self.raw[key] != want:
                bad("%s = %r is not supported (only %r)" % (key, self.raw[key], want))
        # Semantics "Config check".
        k1, s1, k2, B = self.k1, self.s1, self.k2, self.block_size
        for name, v in (("kernel_size", k1), ("kernel_stride", s1), ("block_size", B),
                        ("window_size", self.window_size), ("topk", self.topk)):
            if v <= 0:
                bad("sparse_config.%s must be positive, got %d" % (name, v))
        if k1 % s1 != 0:
            bad("sparse_config: kernel_size %d %% kernel_stride %d != 0" % (k1, s1))
        if B % s1 != 0:
            bad("sparse_config: block_size %d %% kernel_stride %d != 0" % (B, s1))
        if (k2 - 2) // B - self.local_blocks > self.init_blocks:
            bad("sparse_config: floor((k2-2)/B) - window/B = %d - %d > init_blocks = %d; a "
                "non-forced block could exist while no K2 entry is visible"
                % ((k2 - 2) // B, self.local_blocks, self.init_blocks))
        if self.init_blocks + self.local_blocks + 1 > self.topk_total:
            bad("sparse_config: init_blocks + window/B + 1 = %d > topk_total = topk + window/B"
                " = %d" % (self.init_blocks + self.local_blocks + 1, self.topk_total))

    @classmethod
    def from_json_file(cls, path):
        with open(path) as f:
            return cls(json.load(f))


# ========================================================================================
# Small building blocks
# ========================================================================================

def rms_norm(x, w, eps):
    """RMSNorm over the last dim (spec §3.2; in fp32 the bf16 cast is the identity)."""
    r = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (x * r) * w


def linear(x, w):
    """nn.Linear without bias: y = x W^T with W [out, in]."""
    return x @ w.t()


def alibi_slopes(n):
    """ALiBi slope schedule for n heads, in Python double (semantics, Lightning layers).
    Power of two: start^(h+1), start = 2^(-8/n). Otherwise the slopes of the closest lower
    power of two followed by every other slope of twice that power."""
    def pow2(m):
        start = 2.0 ** (-8.0 / m)
        return [start ** (i + 1) for i in range(m)]

    if n & (n - 1) == 0:
        return pow2(n)
    c = 2 ** int(math.floor(math.log2(n)))
    return pow2(c) + alibi_slopes(2 * c)[0::2][: n - c]


def lightning_slopes(n):
    """λ_h rounded to fp32, returned as Python floats (the decay uses these exact values)."""
    return [float(v) for v in np.asarray(alibi_slopes(n), dtype=np.float32)]


def rope_cos_sin(positions, dim, theta):
    """fp32 RoPE tables [T, dim] (spec §3.4): f_i = theta^(-2i/dim), angle = fp32(p) * f_i,
    rotate-half layout (cos/sin repeated for both halves)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    ang = positions.to(torch.float32)[:, None] * inv_freq[None, :]
    emb = torch.cat([ang, ang], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x, cos, sin):
    """x [..., T, dim]; element i is paired with element i + dim/2."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    rotated = torch.cat([-x2, x1], dim=-1)
    return x * cos + rotated * sin


# ========================================================================================
# Lightning (linear) attention, spec §3.6
# ========================================================================================

def lightning_decay_matrix(slope, T, dist=None):
    """[T, T] matrix M[p, t] = gamma^(p-t) = exp(-slope*(p-t)) for t <= p, else 0.
    The powers gamma^n = exp(-slope*n) are evaluated directly (float64, then rounded to
    fp32), so they underflow to exactly 0 for long distances. dist: optional precomputed
    int64 [T, T] matrix max(p - t, 0) (shared between heads)."""
    if dist is None:
        p = torch.arange(T)
        dist = (p[:, None] - p[None, :]).clamp(min=0)
    powers = torch.exp(-slope * torch.arange(T, dtype=torch.float64)).to(torch.float32)
    return torch.tril(powers[dist])


def lightning_attention(q, k, v, slopes, scale):
    """Explicit decay-masked sum, per head h:
        o_p = scale * sum_{t<=p} gamma_h^(p-t) (q_p . k_t) v_t
    q, k, v: [H, T, d]; slopes: H floats (lambda_h). Returns o [H, T, d_v]."""
    H, T, _ = q.shape
    p = torch.arange(T)
    dist = (p[:, None] - p[None, :]).clamp(min=0)
    out = torch.empty(H, T, v.shape[-1], dtype=torch.float32)
    for h in range(H):
        scores = (q[h] * scale) @ k[h].t()                    # [T, T]
        out[h] = (scores * lightning_decay_matrix(slopes[h], T, dist)) @ v[h]
    return out


def lightning_final_state(k, v, slopes):
    """State after the last token: S_h = sum_t gamma_h^(T-1-t) k_t v_t^T, [H, d_k, d_v]."""
    H, T, _ = k.shape
    dist = (T - 1 - torch.arange(T, dtype=torch.float64))
    S = torch.empty(H, k.shape[-1], v.shape[-1], dtype=torch.float32)
    for h in range(H):
        w = torch.exp(-slopes[h] * dist).to(torch.float32)   # [T]
        S[h] = (k[h] * w[:, None]).t() @ v[h]
    return S


# ========================================================================================
# Sparse (InfLLM-v2) attention, spec §3.7 as fixed by semantics "Sparse layers"
# ========================================================================================

def compress_keys(k, kernel, stride):
    """Window means over complete windows: out[g, j] = mean(k[g, stride*j : stride*j+kernel]).
    k: [G, T, d] -> [G, n, d], n = floor((T-kernel)/stride)+1 (0 if T < kernel)."""
    G, T, d = k.shape
    n = (T - kernel) // stride + 1 if T >= kernel else 0
    out = torch.zeros(G, n, d, dtype=torch.float32)
    for j in range(n):
        out[:, j] = k[:, stride * j: stride * j + kernel].mean(dim=1)
    return out


def stage1_group_scores(q, k, cfg, scale):
    """Sc[g, p, j] (semantics "Stage 1") for every query position p and K1 entry j, with
    -inf where K1[j] is not visible from p.
        LSE2_h(p)  = log sum_{visible j} exp(scale q_h(p).K2[j])       (-inf if none)
        Sc_g(p, j) = sum_{h in g} exp(scale q_h(p).K1[j] - LSE2_h(p))   (visible j)
    q: [Hq, T, d], k: [G, T, d]. Returns (Sc [G, T, n1], n1)."""
    Hq, T, _ = q.shape
    G = k.shape[0]
    Hg = Hq // G
    K1 = compress_keys(k, cfg.k1, cfg.s1)
    K2 = compress_keys(k, cfg.k2, cfg.s2)
    n1, n2 = K1.shape[1], K2.shape[1]
    p = torch.arange(T)
    vis1 = cfg.s1 * torch.arange(n1)[None, :] + cfg.k1 <= p[:, None] + 1     # [T, n1]
    vis2 = cfg.s2 * torch.arange(n2)[None, :] + cfg.k2 <= p[:, None] + 1     # [T, n2]
    Sc = torch.full((G, T, n1), -math.inf, dtype=torch.float32)
    for g in range(G):
        total = torch.zeros(T, n1, dtype=torch.float32)
        for h in range(g * Hg, (g + 1) * Hg):
            l2 = (q[h] @ K2[g].t()) * scale                                  # [T, n2]
            lse2 = torch.logsumexp(l2.masked_fill(~vis2, -math.inf), dim=-1)  # [T]
            l1 = (q[h] @ K1[g].t()) * scale                                  # [T, n1]
            total = total + torch.exp(l1 - lse2[:, None])
        Sc[g] = total.masked_fill(~vis1, -math.inf)
    return Sc, n1


def pool_block_scores(Sc, n1, T, cfg):
    """A[g, p, b] = max of Sc[g, p, j] over K1 windows j overlapping block b, i.e.
    ceil((B*b - k1 + 1)/s1) <= j <= floor((B*b + B - 1)/s1); invisible entries are already
    -inf, so 'no visible overlapping window' gives -inf. Returns [G, T, nb]."""
    B, k1, s1 = cfg.block_size, cfg.k1, cfg.s1
    nb = (T + B - 1) // B
    G = Sc.shape[0]
    A = torch.full((G, T, nb), -math.inf, dtype=torch.float32)
    for b in range(nb):
        lo = max(0, -((k1 - 1 - B * b) // s1))      # ceil((B*b - k1 + 1) / s1)
        hi = min(n1 - 1, (B * b + B - 1) // s1)
        if lo <= hi:
            A[:, :, b] = Sc[:, :, lo:hi + 1].max(dim=-1).values
    return A


def select_blocks(A, cfg, chunk=256):
    """Top-k block selection (semantics "Selection").
    Candidates: causal blocks 0..b_p. Forced (+inf): b < init_blocks and
    b_p - window/B <= b <= b_p. Keep the min(topk_total, b_p+1) best, ties to the lower
    block index. A: [G, T, nb]. Returns a boolean mask [G, T, nb]."""
    G, T, nb = A.shape
    B = cfg.block_size
    b = torch.arange(nb)
    bp = torch.arange(T) // B
    causal = b[None, :] <= bp[:, None]                                       # [T, nb]
    forced = causal & ((b[None, :] < cfg.init_blocks) | (b[None, :] >= bp[:, None] - cfg.local_blocks))
    score = A.masked_fill(forced[None], math.inf)
    keep = torch.clamp(bp + 1, max=cfg.topk_total)                           # [T]
    mask = torch.zeros(G, T, nb, dtype=torch.bool)
    lower = b[:, None] < b[None, :]                                          # [b', b]: b' < b
    for p0 in range(0, T, chunk):
        s = score[:, p0:p0 + chunk]                                          # [G, c, nb]
        c = causal[p0:p0 + chunk]                                            # [c, nb]
        s_other = s[:, :, :, None]                                           # b' axis
        s_self = s[:, :, None, :]                                            # b axis
        beats = (s_other > s_self) | ((s_other == s_self) & lower[None, None])
        beats = beats & c[None, :, :, None]                                  # b' must be a candidate
        rank = beats.sum(dim=2)                                              # [G, c, nb]
        mask[:, p0:p0 + chunk] = c[None] & (rank < keep[p0:p0 + chunk][None, :, None])
    counts = mask.sum(dim=-1)
    assert bool((counts == keep[None, :]).all()), "selection count mismatch"
    return mask


def selection_mask_to_ids(mask, topk_total):
    """[G, T, nb] bool -> [T, G, topk_total] int32, ascending, padded with -1."""
    G, T, nb = mask.shape
    idx = torch.arange(nb).expand(G, T, nb)
    big = nb + 1
    keyed = torch.where(mask, idx, torch.full_like(idx, big))
    srt = torch.sort(keyed, dim=-1).values
    if nb < topk_total:
        srt = torch.cat([srt, torch.full((G, T, topk_total - nb), big, dtype=srt.dtype)], dim=-1)
    srt = srt[..., :topk_total]
    srt = srt.masked_fill(srt >= nb, -1)
    return srt.permute(1, 0, 2).contiguous().to(torch.int32)


def selection_ids_to_mask(ids, nb):
    """[T, G, K] int ids (-1 = none) -> [G, T, nb] bool."""
    T, G, K = ids.shape
    mask = torch.zeros(G, T, nb + 1, dtype=torch.bool)
    ids = ids.to(torch.int64).permute(1, 0, 2)
    ids = torch.where(ids < 0, torch.full_like(ids, nb), ids)
    mask.scatter_(2, ids, True)
    return mask[..., :nb]


def sparse_select(q, k, cfg, scale):
    """Stage 1 + pooling + selection. Returns the block mask [G, T, nb]."""
    T = q.shape[1]
    Sc, n1 = stage1_group_scores(q, k, cfg, scale)
    A = pool_block_scores(Sc, n1, T, cfg)
    return select_blocks(A, cfg)


def masked_gqa_attention(q, k, v, token_mask, scale):
    """Softmax attention; q [Hq, T, d], k/v [G, T, d], token_mask [G, T, T] (True = may
    attend). q-head h reads kv-head h // (Hq/G). Returns [Hq, T, d_v]."""
    Hq, T, _ = q.shape
    G = k.shape[0]
    Hg = Hq // G
    out = torch.empty(Hq, T, v.shape[-1], dtype=torch.float32)
    for g in range(G):
        bias = torch.zeros(T, T, dtype=torch.float32).masked_fill(~token_mask[g], -math.inf)
        for h in range(g * Hg, (g + 1) * Hg):
            logits = (q[h] @ k[g].t()) * scale + bias
            out[h] = torch.softmax(logits, dim=-1) @ v[g]
    return out


def causal_token_mask(T):
    p = torch.arange(T)
    return p[None, :] <= p[:, None]


def dense_causal_attention(q, k, v, scale):
    """Dense path (spec §3.7.2)."""
    G, T = k.shape[0], k.shape[1]
    return masked_gqa_attention(q, k, v, causal_token_mask(T)[None].expand(G, T, T), scale)


def block_sparse_attention(q, k, v, block_mask, block_size, scale):
    """Stage 2: each query attends to tokens tau <= p whose block is selected for its group.
    block_mask [G, T, nb] bool."""
    T = k.shape[1]
    tok_block = torch.arange(T) // block_size
    token_mask = block_mask[:, :, tok_block] & causal_token_mask(T)[None]    # [G, T, T]
    return masked_gqa_attention(q, k, v, token_mask, scale)


# ========================================================================================
# Model
# ========================================================================================

class SalaOutput:
    """Result of SalaModel.forward.
    logits:            [T, V] float32
    hidden_states:     list over layers of [T, D] (residual stream after the layer's MLP)
    selected:          {sparse layer: [T, G, topk_total] int32}; all -1 when dense
    dense:             {sparse layer: bool} True when the call used the dense path
    lightning_states:  {lightning layer: [H, d_k, d_v]} state after the last token
    """

    def __init__(self):
        self.logits = None
        self.hidden_states = []
        self.selected = {}
        self.dense = {}
        self.lightning_states = {}


def expected_shapes(cfg):
    """{tensor name: shape} of a checkpoint for cfg (spec §2)."""
    D, F, V = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    qd = cfg.num_attention_heads * cfg.head_dim
    kvd = cfg.num_key_value_heads * cfg.head_dim
    ld = cfg.lightning_nh * cfg.lightning_head_dim
    shapes = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,)}
    if not cfg.tie_word_embeddings:
        shapes["lm_head.weight"] = (V, D)
    for i, t in enumerate(cfg.mixer_types):
        p = "model.layers.%d." % i
        shapes[p + "input_layernorm.weight"] = (D,)
        shapes[p + "post_attention_layernorm.weight"] = (D,)
        shapes[p + "mlp.gate_proj.weight"] = (F, D)
        shapes[p + "mlp.up_proj.weight"] = (F, D)
        shapes[p + "mlp.down_proj.weight"] = (D, F)
        a = p + "self_attn."
        if t == SPARSE:
            shapes[a + "q_proj.weight"] = (qd, D)
            shapes[a + "k_proj.weight"] = (kvd, D)
            shapes[a + "v_proj.weight"] = (kvd, D)
            shapes[a + "o_proj.weight"] = (D, qd)
            shapes[a + "o_gate.weight"] = (qd, D)
        else:
            shapes[a + "q_proj.weight"] = (ld, D)
            shapes[a + "k_proj.weight"] = (ld, D)
            shapes[a + "v_proj.weight"] = (ld, D)
            shapes[a + "o_proj.weight"] = (D, ld)
            shapes[a + "z_proj.weight"] = (ld, D)
            shapes[a + "q_norm.weight"] = (cfg.lightning_head_dim,)
            shapes[a + "k_norm.weight"] = (cfg.lightning_head_dim,)
            shapes[a + "o_norm.weight"] = (ld,)
    return shapes


def is_norm_weight(name):
    return name.endswith("norm.weight")


def random_weights(cfg, seed, std=0.02, norm_noise=0.1):
    """Random checkpoint tensors (numpy float32): normal(0, std) for embeddings and
    projections, 1 + normal(0, norm_noise) for norm weights. numpy PCG64, deterministic."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in sorted(expected_shapes(cfg).items()):
        x = rng.standard_normal(shape).astype(np.float32)
        out[name] = (1.0 + norm_noise * x) if is_norm_weight(name) else std * x
        out[name] = out[name].astype(np.float32)
    return out


class SalaModel:
    def __init__(self, cfg, weights):
        """cfg: SalaConfig; weights: {name: torch tensor or numpy array} (any float dtype;
        kept as given and upcast to fp32 at use)."""
        self.cfg = cfg
        self.w = {}
        want = expected_shapes(cfg)
        for name, t in weights.items():
            if ".rotary_emb." in name:
                continue
            if cfg.tie_word_embeddings and name == "lm_head.weight":
                continue
            if name not in want:
                raise ValueError("unexpected checkpoint tensor %s" % name)
            if isinstance(t, np.ndarray):
                t = torch.from_numpy(np.array(t))
            if tuple(t.shape) != tuple(want[name]):
                raise ValueError("tensor %s has shape %s, expected %s"
                                 % (name, list(t.shape), list(want[name])))
            self.w[name] = t
        missing = sorted(set(want) - set(self.w))
        if missing:
            raise ValueError("checkpoint lacks %d tensors, e.g. %s" % (len(missing), missing[:5]))
        self.slopes = lightning_slopes(cfg.lightning_nh)

    @classmethod
    def from_pretrained(cls, model_dir):
        cfg = SalaConfig.from_json_file(os.path.join(model_dir, "config.json"))
        ck = safetensors_io.Checkpoint(model_dir)
        weights = {}
        for name in ck.keys():
            if ck.dtype(name) == "BF16":
                bits = ck.get(name, bf16="raw").view(np.int16)
                weights[name] = torch.from_numpy(bits).view(torch.bfloat16)  # half the memory
            else:
                weights[name] = torch.from_numpy(ck.get(name))
        return cls(cfg, weights)

    def W(self, name):
        return self.w[name].to(torch.float32)

    # ------------------------------------------------------------------ layers
    def mlp(self, i, x):
        p = "model.layers.%d.mlp." % i
        gate = linear(x, self.W(p + "gate_proj.weight"))
        up = linear(x, self.W(p + "up_proj.weight"))
        return linear(torch.nn.functional.silu(gate) * up, self.W(p + "down_proj.weight"))

    def lightning_qkv(self, i, a):
        """q, k, v [H, T, d] of lightning layer i after QK-norm and RoPE (q unscaled)."""
        cfg = self.cfg
        p = "model.layers.%d.self_attn." % i
        T = a.shape[0]
        H, d = cfg.lightning_nh, cfg.lightning_head_dim
        q = linear(a, self.W(p + "q_proj.weight")).view(T, H, d).transpose(0, 1)
        k = linear(a, self.W(p + "k_proj.weight")).view(T, H, d).transpose(0, 1)
        v = linear(a, self.W(p + "v_proj.weight")).view(T, H, d).transpose(0, 1)
        q = rms_norm(q, self.W(p + "q_norm.weight"), cfg.rms_norm_eps)
        k = rms_norm(k, self.W(p + "k_norm.weight"), cfg.rms_norm_eps)
        cos, sin = rope_cos_sin(torch.arange(T), d, cfg.rope_theta)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def lightning_layer(self, i, a, out):
        cfg = self.cfg
        p = "model.layers.%d.self_attn." % i
        T = a.shape[0]
        q, k, v = self.lightning_qkv(i, a)
        o = lightning_attention(q, k, v, self.slopes, 1.0 / math.sqrt(cfg.lightning_head_dim))
        out.lightning_states[i] = lightning_final_state(k, v, self.slopes)
        o = o.transpose(0, 1).reshape(T, cfg.lightning_nh * cfg.lightning_head_dim)
        o = rms_norm(o, self.W(p + "o_norm.weight"), cfg.rms_norm_eps)
        o = o * torch.sigmoid(linear(a, self.W(p + "z_proj.weight")))
        return linear(o, self.W(p + "o_proj.weight"))

    def sparse_qkv(self, i, a):
        """q [Hq, T, d], k/v [G, T, d] of sparse layer i (no norm, no RoPE)."""
        cfg = self.cfg
        p = "model.layers.%d.self_attn." % i
        T = a.shape[0]
        d = cfg.head_dim
        q = linear(a, self.W(p + "q_proj.weight")).view(T, cfg.num_attention_heads, d).transpose(0, 1)
        k = linear(a, self.W(p + "k_proj.weight")).view(T, cfg.num_key_value_heads, d).transpose(0, 1)
        v = linear(a, self.W(p + "v_proj.weight")).view(T, cfg.num_key_value_heads, d).transpose(0, 1)
        return q, k, v

    def sparse_layer(self, i, a, mode, out):
        cfg = self.cfg
        p = "model.layers.%d.self_attn." % i
        T = a.shape[0]
        q, k, v = self.sparse_qkv(i, a)
        scale = 1.0 / math.sqrt(cfg.head_dim)
        # hf: the whole call is dense when the sequence length after the call is < dense_len.
        dense = (mode == "hf") and (T < cfg.dense_len)
        if dense:
            o = dense_causal_attention(q, k, v, scale)
            out.selected[i] = torch.full((T, cfg.num_key_value_heads, cfg.topk_total), -1,
                                         dtype=torch.int32)
        else:
            mask = sparse_select(q, k, cfg, scale)
            o = block_sparse_attention(q, k, v, mask, cfg.block_size, scale)
            out.selected[i] = selection_mask_to_ids(mask, cfg.topk_total)
        out.dense[i] = dense
        o = o.transpose(0, 1).reshape(T, cfg.num_attention_heads * cfg.head_dim)
        o = o * torch.sigmoid(linear(a, self.W(p + "o_gate.weight")))
        return linear(o, self.W(p + "o_proj.weight"))

    # ------------------------------------------------------------------ forward
    def forward(self, token_ids, mode="hf"):
        """One-shot prefill of token_ids (absolute positions 0..T-1). Returns SalaOutput."""
        if mode not in MODES:
            raise ValueError("mode must be one of %s, got %r" % (MODES, mode))
        cfg = self.cfg
        ids = torch.as_tensor(np.asarray(token_ids), dtype=torch.int64).reshape(-1)
        if ids.numel() == 0:
            raise ValueError("empty token sequence")
        if int(ids.min()) < 0 or int(ids.max()) >= cfg.vocab_size:
            raise ValueError("token id out of range [0, %d)" % cfg.vocab_size)
        out = SalaOutput()
        alpha = cfg.residual_scale
        with torch.no_grad():
            h = self.w["model.embed_tokens.weight"][ids].to(torch.float32) * cfg.scale_emb
            for i, t in enumerate(cfg.mixer_types):
                pre = "model.layers.%d." % i
                a = rms_norm(h, self.W(pre + "input_layernorm.weight"), cfg.rms_norm_eps)
                if t == SPARSE:
                    m = self.sparse_layer(i, a, mode, out)
                else:
                    m = self.lightning_layer(i, a, out)
                h = h + alpha * m
                b = rms_norm(h, self.W(pre + "post_attention_layernorm.weight"), cfg.rms_norm_eps)
                h = h + alpha * self.mlp(i, b)
                out.hidden_states.append(h.clone())
            y = rms_norm(h, self.W("model.norm.weight"), cfg.rms_norm_eps)
            head = "model.embed_tokens.weight" if cfg.tie_word_embeddings else "lm_head.weight"
            out.logits = linear(y / cfg.logit_divisor, self.W(head))
        return out
