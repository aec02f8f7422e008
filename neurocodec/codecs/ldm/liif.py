"""Local implicit image function (LIIF) head, coordinate math, and tiled rendering.

Conventions (as in LIIF): an ``n``-pixel axis covers ``[-1, 1]``; pixel ``i`` has its centre at
``-1 + (2i + 1) / n`` and a query's *cell* is the size of one output pixel in the same units
(``2 / n_out``). Coordinates are ``(y, x)``.

Design choices (see docs in the package README / issue 5):

* The first MLP layer applied to 3x3-unfolded features equals a 3x3 convolution of the feature map,
  so "feature unfolding" is computed once per feature pixel (``LIIFHead.prepare``) instead of once
  per query: same function, ~9x less work per query.
* Features are looked up with integer-index gathers (``torch.gather``), not
  ``grid_sample(mode="nearest")``, whose CPU backward was measured 6x slower.
* The head predicts a residual over a bicubic interpolation of a 3-channel ``base`` image on the
  feature grid (the LR image for the upsampler, a coarse RGB for the codec decoder): a tiny CPU-trained
  LIIF gains +0.5..+1.3 dB this way versus ~+0.1..+0.4 dB when predicting colours directly.
* :func:`render` evaluates queries AND the feature network in tiles with a halo equal to the
  network's receptive radius, so memory stays bounded and tiled output equals untiled output.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn

Tensor = torch.Tensor

#: bicubic kernel parameter; -0.5 (Keys / PIL) so that a zero residual reproduces classical bicubic
CUBIC_A = -0.5


# ------------------------------------------------------------------------------ coordinate math
def pixel_centers(n: int, *, device: torch.device | None = None) -> Tensor:
    """Centres of ``n`` equal cells covering ``[-1, 1]`` (float32)."""
    if n < 1:
        raise ValueError("need n >= 1")
    i = torch.arange(n, device=device, dtype=torch.float64)
    return ((2 * i + 1) / n - 1).float()


def domain_centers(n_out: int, extent: float, *, device: torch.device | None = None) -> Tensor:
    """Centres of ``n_out`` output pixels spread over the sub-interval ``[-1, -1 + 2 * extent]``.

    ``extent`` < 1 when the feature grid covers a padded image and only the first ``extent`` of it
    is real content (the codec pads to a multiple of its down-sampling factor).
    """
    i = torch.arange(n_out, device=device, dtype=torch.float64)
    return (-1 + (2 * i + 1) / n_out * extent).float()


def make_coord(h: int, w: int, *, device: torch.device | None = None) -> Tensor:
    """``(h, w, 2)`` grid of ``(y, x)`` pixel centres."""
    ys, xs = pixel_centers(h, device=device), pixel_centers(w, device=device)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)


def nearest_index(coord: Tensor, n: int) -> Tensor:
    """Index of the grid cell (of ``n``) containing each coordinate, clamped to ``[0, n - 1]``."""
    return torch.clamp(torch.floor((coord + 1) * (n / 2)).long(), 0, n - 1)


def index_center(idx: Tensor, n: int) -> Tensor:
    """Centre coordinate of cell ``idx`` of an ``n``-cell axis (inverse of :func:`nearest_index`)."""
    return (2 * idx.to(torch.float32) + 1) / n - 1


def _cubic_weights(t: Tensor) -> list[Tensor]:
    """Keys cubic convolution weights for taps at offsets -1, 0, 1, 2 from ``floor``."""
    a = CUBIC_A

    def near(x: Tensor) -> Tensor:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: Tensor) -> Tensor:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def gather_pixels(grid: Tensor, iy: Tensor, ix: Tensor) -> Tensor:
    """``grid[b, :, iy[b, q], ix[b, q]]`` as ``(B, Q, C)`` via one integer-index gather."""
    b, c, h, w = grid.shape
    flat = (iy * w + ix).unsqueeze(1).expand(b, c, iy.shape[1])
    return torch.gather(grid.reshape(b, c, h * w), 2, flat).transpose(1, 2)


def bicubic_at(base: Tensor, coord: Tensor, full_hw: tuple[int, int], offset: tuple[int, int] = (0, 0)) -> Tensor:
    """Bicubic interpolation of ``base`` (a window of a ``full_hw`` grid whose top-left cell is
    ``offset``) at normalized coordinates ``coord`` ``(B, Q, 2)``; taps are clamped to the full grid
    (replicate borders). Returns ``(B, Q, C)``."""
    H, W = full_hw
    oy, ox = offset
    uy = (coord[..., 0] + 1) * (H / 2) - 0.5
    ux = (coord[..., 1] + 1) * (W / 2) - 0.5
    fy, fx = torch.floor(uy), torch.floor(ux)
    wy, wx = _cubic_weights(uy - fy), _cubic_weights(ux - fx)
    fy, fx = fy.long(), fx.long()
    out = 0
    for dy in range(4):
        iy = torch.clamp(fy + (dy - 1), 0, H - 1) - oy
        for dx in range(4):
            ix = torch.clamp(fx + (dx - 1), 0, W - 1) - ox
            out = out + gather_pixels(base, iy, ix) * (wy[dy] * wx[dx]).unsqueeze(-1)
    return out


# ---------------------------------------------------------------------------------- LIIF head
class LIIFHead(nn.Module):
    """LIIF: MLP(feature unfolded 3x3, relative coordinate, relative cell) with local ensemble."""

    def __init__(self, in_ch: int, hidden: int = 64, depth: int = 3, out_ch: int = 3) -> None:
        super().__init__()
        self.unfold = nn.Conv2d(in_ch, hidden, 3, padding=1)  # == first Linear on 3x3-unfolded features
        self.pos = nn.Linear(4, hidden, bias=False)  # relative (y, x) coordinate and cell
        layers: list[nn.Module] = []
        for _ in range(depth - 1):
            layers += [nn.ReLU(), nn.Linear(hidden, hidden)]
        layers += [nn.ReLU(), nn.Linear(hidden, out_ch)]
        self.mlp = nn.Sequential(*layers)

    #: extra receptive radius (in feature pixels) added by :meth:`prepare`
    radius = 1

    def prepare(self, feat: Tensor) -> Tensor:
        return self.unfold(feat)

    def query(
        self,
        hfeat: Tensor,
        coord: Tensor,
        cell: Tensor,
        full_hw: tuple[int, int],
        offset: tuple[int, int] = (0, 0),
    ) -> Tensor:
        """Decode ``coord`` ``(B, Q, 2)`` with cells ``cell`` ``(B, Q, 2)`` from prepared features
        ``hfeat`` (a window of the ``full_hw`` grid whose top-left cell is ``offset``)."""
        H, W = full_hw
        oy, ox = offset
        scale = coord.new_tensor([H, W])
        rel_cell = cell * scale
        preds, areas = [], []
        eps = 1e-6
        for vy in (-1, 1):
            for vx in (-1, 1):
                # the 4 nearest feature cells around the query (local ensemble)
                iy = nearest_index(coord[..., 0] + (vy / H + eps), H)
                ix = nearest_index(coord[..., 1] + (vx / W + eps), W)
                rel = torch.stack(
                    [(coord[..., 0] - index_center(iy, H)) * H, (coord[..., 1] - index_center(ix, W)) * W], dim=-1
                )
                g = gather_pixels(hfeat, iy - oy, ix - ox)
                preds.append(self.mlp(g + self.pos(torch.cat([rel, rel_cell], dim=-1))))
                areas.append((rel[..., 0] * rel[..., 1]).abs() + 1e-9)
        total = areas[0] + areas[1] + areas[2] + areas[3]
        # each prediction is weighted by the area of the rectangle diagonal to it
        out = 0
        for p, a in zip(preds, reversed(areas)):
            out = out + p * (a / total).unsqueeze(-1)
        return out


# ---------------------------------------------------------------------------- tiled rendering
FeatureFn = Callable[[Tensor], tuple[Tensor, Tensor]]


def needed_range(coords: Tensor, n: int, margin: int = 2) -> tuple[int, int]:
    """Inclusive range of cells of an ``n``-cell axis that queries at ``coords`` can touch (the
    local ensemble reaches one cell either side, bicubic taps two)."""
    lo = int(nearest_index(coords.min(), n)) - margin
    hi = int(nearest_index(coords.max(), n)) + margin
    return max(lo, 0), min(hi, n - 1)


def render(
    feature_fn: FeatureFn,
    radius: int,
    head: LIIFHead,
    src: Tensor,
    ys: Tensor,
    xs: Tensor,
    cell: tuple[float, float],
    *,
    tile: int | None = 256,
    progress: bool = False,
) -> Tensor:
    """Render the output grid ``ys x xs`` (1-D normalized coordinates) from ``src`` ``(B, C, h, w)``.

    ``feature_fn(window) -> (feat, base)`` maps a window of ``src`` to features and a 3-channel base on
    the same grid; ``radius`` is its receptive radius. Output ``(B, 3, len(ys), len(xs))`` =
    bicubic(base) + LIIF residual. ``tile``: output tile side (``None``: everything at once).
    """
    b, _, h, w = src.shape
    out_h, out_w = ys.numel(), xs.numel()
    out = src.new_empty(b, 3, out_h, out_w)
    step_y = out_h if tile is None else tile
    step_x = out_w if tile is None else tile
    halo = radius + head.radius
    from tqdm.auto import tqdm

    bar = tqdm(total=-(-out_h // step_y) * -(-out_w // step_x), desc=f"rendering {out_w}x{out_h}", unit="tile",
               disable=not progress, leave=False)
    for r0 in range(0, out_h, step_y):
        ty = ys[r0 : r0 + step_y]
        if tile is None:
            (y0, y1) = (0, h - 1)
        else:
            y0, y1 = needed_range(ty, h)
        for c0 in range(0, out_w, step_x):
            tx = xs[c0 : c0 + step_x]
            x0, x1 = (0, w - 1) if tile is None else needed_range(tx, w)
            # the source window with a halo, so the cropped features equal the full computation
            a0, a1 = max(y0 - halo, 0), min(y1 + halo, h - 1)
            b0, b1 = max(x0 - halo, 0), min(x1 + halo, w - 1)
            feat, base = feature_fn(src[:, :, a0 : a1 + 1, b0 : b1 + 1])
            hfeat = head.prepare(feat)
            crop = (slice(None), slice(None), slice(y0 - a0, y1 - a0 + 1), slice(x0 - b0, x1 - b0 + 1))
            hfeat, base = hfeat[crop], base[crop]
            coord = torch.stack(torch.meshgrid(ty, tx, indexing="ij"), dim=-1).reshape(1, -1, 2).expand(b, -1, -1)
            cells = coord.new_tensor(cell).expand_as(coord)
            pred = head.query(hfeat, coord, cells, (h, w), (y0, x0))
            pred = pred + bicubic_at(base, coord, (h, w), (y0, x0))
            out[:, :, r0 : r0 + ty.numel(), c0 : c0 + tx.numel()] = pred.transpose(1, 2).reshape(b, 3, ty.numel(), tx.numel())
            bar.update(1)
    bar.close()
    return out


def output_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """``round(size x scale)`` (at least 1 pixel)."""
    return max(1, int(math.floor(h * scale + 0.5))), max(1, int(math.floor(w * scale + 0.5)))
