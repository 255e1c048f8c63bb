//! Image containers of the augmentation path: 8-bit RGB in HWC order (what
//! PIL holds and Pillow resamples) and CHW tensors (what torchvision's tensor
//! ops and the teacher see), uint8 and float32.

/// 8-bit RGB, row-major HWC, as a PIL "RGB" image.
#[derive(Clone, PartialEq, Eq)]
pub struct Rgb8 {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Rgb8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rgb8({}x{})", self.width, self.height)
    }
}

impl Rgb8 {
    pub fn new(width: usize, height: usize) -> Self {
        Rgb8 {
            width,
            height,
            data: vec![0; width * height * 3],
        }
    }

    pub fn from_raw(width: usize, height: usize, data: Vec<u8>) -> Self {
        assert_eq!(
            data.len(),
            width * height * 3,
            "Rgb8::from_raw: {width}x{height}x3 != {}",
            data.len()
        );
        Rgb8 {
            width,
            height,
            data,
        }
    }

    #[inline]
    pub fn px(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// `to_tensor` without the scaling: CHW uint8.
    pub fn to_chw(&self) -> U8Chw {
        let plane = self.width * self.height;
        let mut data = vec![0u8; plane * 3];
        for (i, px) in self.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                data[c * plane + i] = px[c];
            }
        }
        U8Chw {
            channels: 3,
            height: self.height,
            width: self.width,
            data,
        }
    }
}

/// A CHW uint8 tensor (torchvision's uint8 image layout).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct U8Chw {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<u8>,
}

/// A CHW float32 tensor.
#[derive(Clone, PartialEq, Debug)]
pub struct F32Chw {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl U8Chw {
    pub fn plane(&self) -> usize {
        self.height * self.width
    }

    pub fn channel(&self, c: usize) -> &[u8] {
        &self.data[c * self.plane()..(c + 1) * self.plane()]
    }

    pub fn channel_mut(&mut self, c: usize) -> &mut [u8] {
        let p = self.plane();
        &mut self.data[c * p..(c + 1) * p]
    }
}

impl F32Chw {
    pub fn plane(&self) -> usize {
        self.height * self.width
    }
}
