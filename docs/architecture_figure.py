# Draws docs/architecture.png, the figure of docs/architecture.md.
#
# Regenerate from the repository root with:
#     /usr/bin/python3 docs/architecture_figure.py
# (needs only matplotlib; it uses the Agg backend, so no display is needed).
#
# Left panel: the project's floors (reference/ -> simulators/ -> experiments/ ->
# notebooks/) and how a model is assembled from ModelArgs, with its arenas.
# Right panel: one training step's data flow, TOML to HDF5 to notebook, with
# the stage API of reference/transformer.hpp.
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parent / "architecture.png"

C_REF = "#dbe9f6"     # reference/
C_SIM = "#e3f1dc"     # simulators/
C_APP = "#fbe8d3"     # experiments/
C_NB = "#efe2f3"      # notebooks/
C_MEM = "#f6f0c8"     # memory
C_STAGE = "#ffffff"
EDGE = "#444444"


def box(ax, x, y, w, h, text, color, size=9, weight="normal", align="center", edge=EDGE, lw=1.0,
        family=None, style="round,pad=0.02,rounding_size=0.12"):
    """A rounded box with its lower-left corner at (x, y); text centered (or left-aligned)."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle=style, facecolor=color, edgecolor=edge, lw=lw))
    if align == "left":
        ax.text(x + 0.12, y + h / 2, text, ha="left", va="center", fontsize=size, weight=weight,
                family=family, linespacing=1.25)
    else:
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, weight=weight,
                family=family, linespacing=1.25)


def arrow(ax, x0, y0, x1, y1, color=EDGE, lw=1.3, style="-|>", ls="-", rad=0.0):
    ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle=style, mutation_scale=12, color=color,
                                 lw=lw, linestyle=ls, connectionstyle=f"arc3,rad={rad}"))


def label(ax, x, y, text, size=8, color="#333333", ha="left", va="center", style="normal", **kw):
    ax.text(x, y, text, fontsize=size, color=color, ha=ha, va=va, style=style, linespacing=1.2, **kw)


def left_panel(ax):
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    ax.set_title("Layers of the project, and how a model is assembled", fontsize=12, weight="bold", pad=8)

    # --- floors ---------------------------------------------------------------
    floors = [
        ("reference/", "exact CPU layers,\nmodel, trainer", C_REF),
        ("simulators/", "pipeline, fp8,\nbalance", C_SIM),
        ("experiments/", "dslab CLI, configs,\nHDF5 results", C_APP),
        ("notebooks/", "figures from\nresults/*.h5", C_NB),
    ]
    w, gap, y0, h = 2.1, 0.4, 8.35, 1.05
    for i, (name, sub, color) in enumerate(floors):
        x = 0.1 + i * (w + gap)
        box(ax, x, y0, w, h, "", color)
        ax.text(x + w / 2, y0 + h - 0.27, name, ha="center", va="center", fontsize=10, weight="bold",
                family="monospace")
        ax.text(x + w / 2, y0 + 0.36, sub, ha="center", va="center", fontsize=8, linespacing=1.15)
        if i > 0:
            arrow(ax, x - 0.04, y0 + h / 2, x - gap + 0.04, y0 + h / 2)
    label(ax, 5.0, 8.05, "arrow = \"uses\": a floor includes only floors to its left (never the other way)",
          size=8, ha="center", style="italic")

    # --- ModelArgs --------------------------------------------------------------
    box(ax, 0.1, 2.55, 2.5, 4.9, "", C_REF)
    ax.text(1.35, 7.12, "ModelArgs", ha="center", fontsize=10, weight="bold", family="monospace")
    ax.text(1.35, 6.8, "reference/model_args.hpp", ha="center", fontsize=7, color="#555555")
    fields = [
        ("dim, n_layers, n_heads,", ""),
        ("n_kv_heads, inter_dim ...", ""),
        ("attn", "Mha | Mla"),
        ("mla", "MlaArgs"),
        ("moe", "MoeArgs"),
        ("balance", "BalanceArgs"),
        ("mtp", "MtpArgs"),
        ("fp8", "fp8::Fp8Args"),
    ]
    for j, (k, v) in enumerate(fields):
        yy = 6.35 - j * 0.44
        ax.text(0.3, yy, k, fontsize=8, family="monospace", va="center")
        if v:
            ax.text(1.2, yy, v, fontsize=8, family="monospace", va="center", color="#1f4e79")
    arrow(ax, 2.62, 5.0, 3.08, 5.0)

    # --- Transformer column ------------------------------------------------------
    tx, tw = 3.15, 3.6
    box(ax, tx - 0.1, 0.95, tw + 0.2, 6.5, "", "#f7fbff", edge="#7a9cc6", lw=1.0)
    ax.text(tx + tw / 2, 7.15, "Transformer<T>", ha="center", fontsize=10, weight="bold", family="monospace")
    ax.text(tx + tw / 2, 6.85, "reference/transformer.hpp", ha="center", fontsize=7, color="#555555")
    box(ax, tx, 6.05, tw, 0.55, "embed  [V, D]", C_REF, size=9)
    # blocks
    box(ax, tx, 3.55, tw, 2.2, "", C_REF)
    ax.text(tx + tw / 2, 5.5, "blocks  l = 0 .. n_layers-1", ha="center", fontsize=9, weight="bold")
    ax.text(tx + tw / 2, 5.22, "reference/block.hpp  (model.py Block)", ha="center", fontsize=7, color="#555555")
    box(ax, tx + 0.15, 4.35, tw - 0.3, 0.6, "attn: variant< MHA | MLA >\nx += attn(attn_norm(x))",
        C_STAGE, size=8)
    box(ax, tx + 0.15, 3.68, tw - 0.3, 0.6, "ffn: variant< dense | MoE >\nx += ffn(ffn_norm(x))",
        C_STAGE, size=8)
    box(ax, tx, 2.75, tw, 0.55, "norm + head  [V, D]  -> logits", C_REF, size=9)
    hw = (tw - 0.15) / 2
    box(ax, tx, 1.1, hw, 1.4, "", C_REF)
    ax.text(tx + hw / 2, 2.2, "loss_forward", ha="center", fontsize=8.5, weight="bold", family="monospace")
    ax.text(tx + hw / 2, 1.62, "cross-entropy\n(\"main\")\n+ MoE balance\nlosses",
            ha="center", va="center", fontsize=7.5, linespacing=1.15)
    box(ax, tx + hw + 0.15, 1.1, hw, 1.4, "", "#e8f0fa")
    ax.text(tx + 1.5 * hw + 0.15, 2.2, "MTP modules", ha="center", fontsize=8.5, weight="bold")
    ax.text(tx + 1.5 * hw + 0.15, 1.62, "k = 1..D, after\nthe head: eh_proj,\nown block, norm;\nshared embed, head",
            ha="center", va="center", fontsize=7.5, linespacing=1.15)
    arrow(ax, tx + hw, 1.8, tx + hw + 0.15, 1.8, lw=1.0)
    for ya, yb in [(6.05, 5.75), (3.55, 3.3), (2.75, 2.5)]:
        arrow(ax, tx + tw / 2, ya, tx + tw / 2, yb)

    # --- arenas --------------------------------------------------------------------
    mx, mw = 7.25, 2.65
    ax.text(mx + mw / 2, 7.15, "Memory", ha="center", fontsize=10, weight="bold")
    ax.text(mx + mw / 2, 6.95, "named tensors are views", ha="center", va="top", fontsize=7, color="#555555")
    box(ax, mx, 5.7, mw, 0.95, "params.arena()\none buffer, every tensor\na view of its slice", C_MEM, size=8)
    box(ax, mx, 4.5, mw, 0.95, "grads.arena()\nsame layout;\nzero_grad() = one fill", C_MEM, size=8)
    box(ax, mx, 3.3, mw, 0.95, "AdamW m, v\nflat vectors,\none offset per tensor", C_MEM, size=8)
    box(ax, mx, 2.1, mw, 0.95, "buffers(): expert bias\n(Eq. 24), not trained,\noutside the arena", C_MEM, size=8)
    box(ax, mx, 0.95, mw, 0.9, "LinearPolicy{fp8, defer}\npassed down to every linear", "#ffffff", size=8)
    arrow(ax, tx + tw + 0.12, 6.2, mx - 0.05, 6.2, color="#8a7a20")


def right_panel(ax):
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    ax.set_title("One training step: TOML to HDF5 to notebook", fontsize=12, weight="bold", pad=8)

    # --- main column ----------------------------------------------------------------
    cx, cw = 0.1, 4.3
    steps = [
        (8.75, 0.85, "CONFIG.toml  [model] [train] [data] ...\nextends = \"base.toml\";  --set key=value", C_APP),
        (7.3, 1.05, "load_run_config   experiments/config.cpp\nschema() per key, extends, --set, cross-field\n"
                    "checks; ConfigError -> exit status 2", C_APP),
        (6.2, 0.72, "RunConfig { model: ModelArgs,\ntrain: TrainArgs, data: DataArgs, text }", C_APP),
    ]
    for y, h, text, color in steps:
        box(ax, cx, y, cw, h, text, color, size=8)
    arrow(ax, cx + cw / 2, 8.75, cx + cw / 2, 8.35 + 0.03)
    arrow(ax, cx + cw / 2, 7.3, cx + cw / 2, 6.92 + 0.03)
    arrow(ax, cx + cw / 2, 6.2, cx + cw / 2, 5.82 + 0.03)

    # Trainer step
    box(ax, cx, 2.15, cw, 3.65, "", C_REF)
    ax.text(cx + cw / 2, 5.53, "Trainer::train_step", ha="center", fontsize=9.5, weight="bold",
            family="monospace")
    ax.text(cx + cw / 2, 5.27, "reference/trainer.cpp", ha="center", fontsize=7, color="#555555")
    tsteps = [
        "train_batch(ByteCorpus, seed, step)",
        "zero_grad()",
        "forward()",
        "backward()",
        "global_grad_norm -> clip_grad_norm",
        "AdamW step(lr = LrSchedule::at(step))",
        "update_expert_bias()   (Eq. 24)",
        "metrics; evaluate() every eval_every",
    ]
    for j, t in enumerate(tsteps):
        ax.text(cx + 0.25, 4.95 - j * 0.35, f"{j + 1}. {t}", fontsize=8, va="center", family="monospace")
    arrow(ax, cx + cw / 2, 2.15, cx + cw / 2, 1.78)
    box(ax, cx + cw + 0.2, 2.15, 1.35, 0.95, "checkpoint\nevery N steps\ntmp + rename", C_APP, size=7)
    arrow(ax, cx + cw, 2.62, cx + cw + 0.2, 2.62, lw=1.0)

    box(ax, cx, 0.95, cw, 0.82, "write_result -> FILE.h5   experiments/results.cpp\n"
                                "/config  /metrics  /model  /captured", C_APP, size=8)
    box(ax, cx + cw + 0.2, 0.95, 1.35, 0.82, "notebooks\n(h5py) ->\nfigures", C_NB, size=8)
    arrow(ax, cx + cw, 1.36, cx + cw + 0.2, 1.36)

    # --- stage API ---------------------------------------------------------------------
    sx, sw = 6.2, 3.65
    box(ax, sx - 0.1, 0.95, sw + 0.2, 8.65, "", "#f7fbff", edge="#7a9cc6")
    ax.text(sx + sw / 2, 9.32, "Stage API", ha="center", fontsize=10, weight="bold")
    ax.text(sx + sw / 2, 9.03, "Activations a: owned by the caller", ha="center", fontsize=7.5, color="#555555")
    fwd = ["embed_forward", "layers_forward(first, last)", "head_forward", "loss_forward"]
    bwd = ["loss_backward", "head_backward(dh_extra, defer)", "layers_backward(first, last, &q) B",
           "q.run()  W", "embed_backward"]
    y = 8.45
    ax.text(sx, y, "forward()", fontsize=8, weight="bold", color="#1f4e79")
    for name in fwd:
        y -= 0.48
        box(ax, sx + 0.1, y, sw - 0.2, 0.36, name, C_STAGE, size=7.5, family="monospace")
    y -= 0.35
    ax.text(sx, y, "backward()", fontsize=8, weight="bold", color="#8b1a1a")
    for name in bwd:
        y -= 0.48
        box(ax, sx + 0.1, y, sw - 0.2, 0.36, name, C_STAGE, size=7.5, family="monospace")
    label(ax, sx, y - 0.35, "q: a WeightGradQueue. B: input gradients now;\nW: the queued weight-gradient GEMMs",
          size=7, va="top")
    arrow(ax, sx - 0.12, 4.3, cx + cw + 0.02, 4.25, color="#7a9cc6", ls="--")
    arrow(ax, sx - 0.12, 4.3, cx + cw + 0.02, 3.9, color="#7a9cc6", ls="--")
    label(ax, sx, 1.85, "pipeline stage: its own layer range,\none Activations per micro-batch;\n"
                        "value head: reads a.h_final,\nits gradient enters as dh_extra", size=7, color="#333333")


def main():
    fig, (ax_l, ax_r) = plt.subplots(1, 2, figsize=(14, 7), dpi=120)
    for ax in (ax_l, ax_r):
        ax.set_axis_off()
    left_panel(ax_l)
    right_panel(ax_r)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.93, bottom=0.02, wspace=0.04)
    fig.savefig(OUT, dpi=120)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
