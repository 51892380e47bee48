//! The CPU rows paths' buffers: plain f32 rows kept from one step to the next.

/// The first `len` elements of `buf`, growing it (zeroed) only when it is too short.
pub(crate) fn rows(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

/// `x += y`, as the tensor paths' `x + y`.
pub(crate) fn add_into(x: &mut [f32], y: &[f32]) {
    for (x, y) in x.iter_mut().zip(y) {
        *x += y;
    }
}
