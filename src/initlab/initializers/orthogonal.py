"""Haar-random (semi-)orthogonal matrices and the delta-orthogonal convolution kernel."""

from __future__ import annotations

import torch

from initlab._checks import floating, one_of
from initlab.initializers._args import finite, ndim_at_least, nothing_to_fill

__all__ = ["delta_orthogonal_", "orthogonal_"]


def orthogonal_(
    tensor: torch.Tensor,
    *,
    gain: float = 1.0,
    method: str = "qr",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Fill ``tensor`` in place with a Haar-random (semi-)orthogonal matrix times ``gain``.

    The tensor is viewed as a ``(rows, cols)`` matrix W with ``rows = tensor.size(0)`` and the
    trailing dimensions flattened (as in PyTorch). If ``rows <= cols`` the rows are orthonormal,
    ``W W^T = gain**2 I``; otherwise the columns are, ``W^T W = gain**2 I``. Each entry has
    standard deviation ``gain / sqrt(max(rows, cols))``.

    Both methods start from a matrix G of i.i.d. N(0, 1) entries (transposed if wide):

    - ``"qr"`` (default): ``G = QR``, then ``W = Q diag(sign(diag(R)))``. Without the sign
      correction Q is *not* Haar distributed (LAPACK fixes the signs of R's diagonal).
      Source: Mezzadri, "How to generate random matrices from the classical compact groups"
      (Notices of the AMS 54(5), 2007), the QR algorithm with the ``d / |d|`` correction.
      This is also what ``torch.nn.init.orthogonal_`` does, and for float32/float64 the result
      equals it bit for bit with an identically seeded generator.
    - ``"svd"``: ``G = U S V^T``, then ``W = U V^T``, the orthogonal polar factor of G, as in
      Saxe, McClelland and Ganguli, "Exact solutions to the nonlinear dynamics of learning in
      deep linear neural networks" (ICLR 2014), who take U from the SVD of a Gaussian. U would
      be Haar if its column signs were random, but LAPACK fixes them (for 3 x 3 matrices
      ``U[0, 0]`` is measurably not uniform on [-1, 1], as Haar requires); ``U V^T`` does not
      depend on the signs and is exactly Haar (it inherits the left and right orthogonal
      invariance of G). Costs several times a QR
      (a thin SVD is an iterative bidiagonalization, QR a single Householder sweep).

    float16 and bfloat16 are computed in float32 and cast (PyTorch raises for them).

    Args:
        tensor: at least 2-D, floating point; meta and zero-element tensors are left as they are.
        gain: multiplier of every entry (so ``gain**2`` of the Gram matrix), finite; a negative
            gain flips the sign.
        method: ``"qr"`` or ``"svd"``.
        generator: random stream; ``None`` draws from the global generator.

    Returns:
        ``tensor`` itself.

    Raises:
        ValueError: if ``tensor.ndim < 2``, ``method`` is unknown or ``gain`` is not finite.
        TypeError: if ``tensor`` is not floating point.

    Example:
        >>> w = orthogonal_(torch.empty(4 * 64, 64))  # W^T W = I_64
    """
    floating(tensor, "orthogonal_")
    ndim_at_least(tensor, 2, "orthogonal_")
    gain = finite("gain", gain)
    factor = _FACTORS[one_of("method", method, _FACTORS)]
    if nothing_to_fill(tensor):
        return tensor
    rows = tensor.size(0)
    cols = tensor.numel() // rows
    work_dtype = tensor.dtype if tensor.dtype in (torch.float32, torch.float64) else torch.float32
    wide = rows < cols
    with torch.no_grad():
        gaussian = tensor.new_empty((rows, cols), dtype=work_dtype)
        gaussian.normal_(0, 1, generator=generator)
        q = factor(gaussian.t() if wide else gaussian)  # tall: orthonormal columns
        tensor.copy_((q.t() if wide else q).reshape(tensor.shape))
        if gain != 1.0:  # x * 1.0 == x exactly: skipping the pass changes no bit
            tensor.mul_(gain)  # after the copy, in the tensor's dtype, as PyTorch does
    return tensor


def _qr_factor(gaussian: torch.Tensor) -> torch.Tensor:
    q, r = torch.linalg.qr(gaussian)
    # Mezzadri's d / |d|; R's diagonal is nonzero almost surely, 0 maps to +1 to stay orthogonal.
    # In place: a 4096 x 4096 float32 Q is 64 MiB that need not be allocated twice.
    return q.mul_(torch.where(torch.diagonal(r) < 0, -1.0, 1.0).to(q.dtype))


def _svd_factor(gaussian: torch.Tensor) -> torch.Tensor:
    u, _, vh = torch.linalg.svd(gaussian, full_matrices=False)
    return u @ vh


_FACTORS = {"qr": _qr_factor, "svd": _svd_factor}


def delta_orthogonal_(
    tensor: torch.Tensor,
    *,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Fill a convolution kernel in place: an orthogonal matrix at the center tap, zeros elsewhere.

    For a kernel ``(out, in, *kernel)`` with ``out >= in``:
    ``W[:, :, c_1, ..., c_d] = gain * H`` at the center ``c_i = kernel_i // 2``, and 0 at every
    other tap, where H is a Haar-random ``(out, in)`` matrix with orthonormal columns
    (``H^T H = I``, drawn by :func:`orthogonal_`). A "same"-padded convolution with this kernel
    applies ``gain * H`` at every position, so it preserves norms exactly (dynamical isometry).

    Source: Xiao, Bahri, Sohl-Dickstein, Schoenholz and Pennington, "Dynamical Isometry and a
    Mean Field Theory of CNNs: How to Train 10,000-Layer Vanilla Convolutional Neural
    Networks" (ICML 2018), Algorithms 1 and 2 (delta-orthogonal initialization).

    Odd kernel sizes are the intended case. An even size has no center: the tap goes to index
    ``k // 2`` (the same convention as :func:`dirac_`), so a symmetrically padded convolution
    shifts its output by one position along that dimension; norms are still preserved.

    Args:
        tensor: kernel ``(out, in, *kernel)`` with at least one spatial dimension and
            ``out >= in``, floating point; meta and zero-element tensors are left as they are.
        gain: multiplier of the center matrix, finite (e.g. ``calculate_gain("relu")``).
        generator: random stream; ``None`` draws from the global generator.

    Returns:
        ``tensor`` itself.

    Raises:
        ValueError: if ``tensor.ndim < 3`` (use :func:`orthogonal_` for a matrix), if
            ``out < in`` (no ``(out, in)`` matrix has orthonormal columns), or ``gain`` is not
            finite.
        TypeError: if ``tensor`` is not floating point.

    Example:
        >>> w = delta_orthogonal_(torch.empty(64, 32, 3, 3))  # w[:, :, 1, 1] has W^T W = I
    """
    floating(tensor, "delta_orthogonal_")
    ndim_at_least(tensor, 3, "delta_orthogonal_")
    out_channels, in_channels = tensor.shape[:2]
    if out_channels < in_channels:
        raise ValueError(
            "delta_orthogonal_ needs out_channels >= in_channels (an orthogonal map cannot "
            f"reduce the dimension); got shape={tuple(tensor.shape)}"
        )
    gain = finite("gain", gain)
    if nothing_to_fill(tensor):
        return tensor
    center = orthogonal_(
        tensor.new_empty((out_channels, in_channels)), gain=gain, generator=generator
    )
    taps = tuple(k // 2 for k in tensor.shape[2:])
    with torch.no_grad():
        tensor.zero_()
        tensor[(slice(None), slice(None), *taps)] = center
    return tensor
