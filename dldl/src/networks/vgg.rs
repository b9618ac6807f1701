//! The trainable age networks: VGG-16's convolutional trunk and DLDL-v2's ThinAgeNet and
//! TinyAgeNet (Gao et al. 2018, §4.1), each ending in a global average pool and a linear layer
//! onto the 101 ages; and the pretrained dlib network with its head widened to the 101 ages, for
//! fine-tuning it as a stream of its own.

use std::{fmt, str::FromStr};

use burn::{
    config::Config,
    module::Module,
    nn::{
        BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d,
        conv::{Conv2d, Conv2dConfig},
        pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig},
    },
    tensor::{
        Device, Tensor,
        activation::{relu, softmax},
    },
};
use serde::{Deserialize, Serialize};

use crate::{
    AGE_BINS, DldlError,
    networks::conv_grad,
    networks::preprocess::Normalization,
    networks::pretrained::{self, PretrainedAgeNet, PretrainedAgeNetConfig},
};

/// VGG-16's convolutional layout: output channels of each 3×3 conv, in five stages that each
/// end in a 2×2 max-pool.
const VGG16_STAGES: [&[usize]; 5] = [
    &[64, 64],
    &[128, 128],
    &[256, 256, 256],
    &[512, 512, 512],
    &[512, 512, 512],
];

/// One 3×3 convolution of a VGG-style stream, as its training step sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvLayer {
    pub in_channels: usize,
    pub out_channels: usize,
    /// The side of its square input and output, in pixels.
    pub size: usize,
    /// Whether the stage's 2×2 max-pool follows it.
    pub pooled: bool,
}

/// The 3×3 convolutions of `architecture` at `input_size`, in order (empty for the pretrained
/// network, which is no VGG). The layout [`AgeNetConfig::init`] builds; benchmarks time its
/// layers one by one.
pub fn conv_layers(architecture: Architecture, input_size: usize) -> Vec<ConvLayer> {
    if architecture == Architecture::Pretrained {
        return Vec::new();
    }
    let divisor = architecture.width_divisor();
    let (mut in_channels, mut size, mut layers) = (3, input_size, Vec::new());
    for widths in VGG16_STAGES {
        for (i, &width) in widths.iter().enumerate() {
            layers.push(ConvLayer {
                in_channels,
                out_channels: width / divisor,
                size,
                pooled: i + 1 == widths.len(),
            });
            in_channels = width / divisor;
        }
        size /= 2;
    }
    layers
}

/// The smallest input that survives five 2×2 max-pools with at least one pixel.
pub const MIN_INPUT_SIZE: usize = 32;
/// The largest input side accepted, from flags, pipelines and model cards alike, so that a typo
/// is an error rather than a request for gigabytes (the papers use 224).
pub const MAX_INPUT_SIZE: usize = 1024;

/// Which network a stream uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// VGG-16's trunk as published: 3×3 conv with bias + ReLU, no normalisation.
    Vgg16,
    /// VGG-16's trunk with bias-free conv + batch norm + ReLU, which trains from scratch.
    Vgg16Bn,
    /// DLDL-v2's ThinAgeNet: VGG-16 with half the channels, bias-free conv + BN + ReLU.
    ThinAgeNet,
    /// DLDL-v2's TinyAgeNet: VGG-16 with a quarter of the channels, bias-free conv + BN + ReLU.
    TinyAgeNet,
    /// dlib's pretrained age ResNet on 64×64 chips, its head widened to the 101 ages; a stage
    /// of it without an earlier stage starts from the published weights.
    Pretrained,
}

impl Architecture {
    pub const ALL: [Architecture; 5] = [
        Architecture::Vgg16,
        Architecture::Vgg16Bn,
        Architecture::ThinAgeNet,
        Architecture::TinyAgeNet,
        Architecture::Pretrained,
    ];

    /// The input size a stream of this network takes unless told otherwise.
    pub fn default_input_size(self) -> usize {
        match self {
            Architecture::Pretrained => pretrained::CHIP_SIZE,
            _ => 224,
        }
    }

    /// The input normalisation this network is built for.
    pub fn normalization(self) -> Normalization {
        match self {
            Architecture::Pretrained => pretrained::NORMALIZATION,
            _ => Normalization::IMAGENET,
        }
    }

    /// VGG-16's channel counts are divided by this.
    fn width_divisor(self) -> usize {
        match self {
            Architecture::Vgg16 | Architecture::Vgg16Bn => 1,
            Architecture::ThinAgeNet => 2,
            Architecture::TinyAgeNet => 4,
            Architecture::Pretrained => 1,
        }
    }

    fn batch_norm(self) -> bool {
        !matches!(self, Architecture::Vgg16)
    }

    pub fn name(self) -> &'static str {
        match self {
            Architecture::Vgg16 => "vgg16",
            Architecture::Vgg16Bn => "vgg16-bn",
            Architecture::ThinAgeNet => "thin-age-net",
            Architecture::TinyAgeNet => "tiny-age-net",
            Architecture::Pretrained => "pretrained",
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Architecture {
    type Err = DldlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key: String = s
            .trim()
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        Architecture::ALL
            .into_iter()
            .find(|a| a.name().replace('-', "") == key)
            .ok_or_else(|| DldlError::UnknownArchitecture(s.to_string()))
    }
}

/// The hyper-parameters of an age network.
#[derive(Config, Debug, PartialEq)]
pub struct AgeNetConfig {
    pub architecture: Architecture,
    /// Side of the square input in pixels; the global average pool adapts to it.
    #[config(default = 224)]
    pub input_size: usize,
    /// How RGB pixels are turned into the network's input.
    #[config(default = "Normalization::IMAGENET")]
    pub normalization: Normalization,
}

/// One 3×3 conv (+ batch norm) + ReLU.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    norm: Option<BatchNorm>,
}

impl ConvBlock {
    /// The batch norm folded into the conv, for inference: with `s = γ / √(running var + ε)`,
    /// the conv followed by `x·s + (β − running mean·s)` ([`pretrained::scale_conv`]), and no
    /// batch norm left.
    fn fold(self) -> Self {
        let Some(norm) = self.norm else {
            return self;
        };
        let scale =
            norm.gamma.val().detach() / (norm.running_var.value().detach() + norm.epsilon).sqrt();
        let shift = norm.beta.val().detach() - norm.running_mean.value().detach() * scale.clone();
        let conv = pretrained::scale_conv(self.conv, scale, shift);
        ConvBlock { conv, norm: None }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // Bias-free convs take `conv_grad::conv3x3`, whose weight gradient is faster when
        // training on the CPU.
        let x = conv_grad::forward(&self.conv, x);
        let x = match &self.norm {
            Some(norm) => norm.forward(x),
            None => x,
        };
        relu(x)
    }
}

/// A trainable age network: `[batch, 3, size, size]` images → logits over the 101 ages.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum AgeNet {
    Vgg(VggNet),
    Pretrained(PretrainedAgeNet),
}

/// A VGG-style network mapping `[batch, 3, size, size]` images to logits over the 101 ages.
#[derive(Module, Debug)]
pub struct VggNet {
    /// The five stages of 3×3 convolutions; each is followed by a 2×2 max-pool.
    stages: Vec<Vec<ConvBlock>>,
    pool: MaxPool2d,
    global_pool: AdaptiveAvgPool2d,
    head: Linear,
}

impl AgeNetConfig {
    /// The configuration of `architecture` at `input_size`, with the network's normalisation.
    pub fn for_stream(architecture: Architecture, input_size: usize) -> Self {
        AgeNetConfig::new(architecture)
            .with_input_size(input_size)
            .with_normalization(architecture.normalization())
    }

    pub fn validate(&self) -> Result<(), DldlError> {
        if self.architecture == Architecture::Pretrained {
            if self.input_size != pretrained::CHIP_SIZE {
                return Err(DldlError::WrongInputSize {
                    expected: pretrained::CHIP_SIZE,
                    found: self.input_size,
                });
            }
            return Ok(());
        }
        if self.input_size < MIN_INPUT_SIZE {
            return Err(DldlError::InputTooSmall(self.input_size));
        }
        if self.input_size > MAX_INPUT_SIZE {
            return Err(DldlError::InputTooLarge(self.input_size));
        }
        Ok(())
    }

    /// The network with fresh weights (for the pretrained network: its structure, with the
    /// 101-age head, ready for a record or [`AgeNet::Pretrained`] from the ONNX file).
    pub fn init(&self, device: &Device) -> Result<AgeNet, DldlError> {
        self.validate()?;
        if self.architecture == Architecture::Pretrained {
            return Ok(AgeNet::Pretrained(
                PretrainedAgeNetConfig::new()
                    .with_ages(AGE_BINS)
                    .init(device),
            ));
        }
        let divisor = self.architecture.width_divisor();
        let batch_norm = self.architecture.batch_norm();
        let mut in_channels = 3;
        let stages = VGG16_STAGES
            .iter()
            .map(|widths| {
                widths
                    .iter()
                    .map(|&width| {
                        let out_channels = width / divisor;
                        let conv = Conv2dConfig::new([in_channels, out_channels], [3, 3])
                            .with_padding(PaddingConfig2d::Same)
                            .with_bias(!batch_norm)
                            .init(device);
                        let norm =
                            batch_norm.then(|| BatchNormConfig::new(out_channels).init(device));
                        in_channels = out_channels;
                        ConvBlock { conv, norm }
                    })
                    .collect()
            })
            .collect();
        Ok(AgeNet::Vgg(VggNet {
            stages,
            pool: MaxPool2dConfig::new([2, 2]).init(),
            global_pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            head: LinearConfig::new(in_channels, AGE_BINS).init(device),
        }))
    }
}

impl AgeNet {
    /// The same network with its logits divided by `temperature` (> 0; its head's weights and
    /// bias scaled by the inverse): each distribution becomes `p^(1/T)`, renormalised, sharper
    /// below 1 and flatter above. How a calibration fitted on validation is stored in the
    /// weights, so that every product that runs them gets it.
    pub fn with_temperature(self, temperature: f32) -> Self {
        match self {
            AgeNet::Vgg(net) => AgeNet::Vgg(VggNet {
                head: crate::networks::pretrained::scale_linear(net.head, 1.0 / temperature),
                ..net
            }),
            AgeNet::Pretrained(net) => AgeNet::Pretrained(net.with_temperature(temperature)),
        }
    }
    /// The same network for inference only, with its normalisations folded into its convs:
    /// batch norms (the VGG family, [`VggNet::fold_batch_norm`]) or the pretrained network's
    /// affine layers, with its convs lowered to matrix products on the
    /// CPU backend ([`PretrainedAgeNet::lower_convs`]). Equal to the network in inference
    /// mode up to float rounding; never to be trained or saved (a folded record no longer has
    /// its batch norms).
    pub fn for_inference(self) -> Self {
        match self {
            AgeNet::Vgg(net) => AgeNet::Vgg(net.fold_batch_norm()),
            AgeNet::Pretrained(net) => AgeNet::Pretrained(net.lower_convs()),
        }
    }

    /// Logits over the ages: `[batch, 3, size, size]` → `[batch, 101]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            AgeNet::Vgg(net) => net.forward(images),
            AgeNet::Pretrained(net) => net.forward(images),
        }
    }

    /// The number of trained parameters (batch norm's running statistics left out).
    pub fn trainable_params(&self) -> usize {
        match self {
            AgeNet::Vgg(net) => net.trainable_params(),
            AgeNet::Pretrained(net) => net.num_params(),
        }
    }

    /// The predicted age distributions: softmax of [`forward`](Self::forward), `[batch, 101]`.
    pub fn distribution(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            AgeNet::Vgg(net) => softmax(net.forward(images), 1),
            AgeNet::Pretrained(net) => net.distribution(images),
        }
    }
}

impl VggNet {
    /// Every batch norm folded into the conv before it (see [`AgeNet::for_inference`]): one
    /// pass over each feature map fewer. VGG-16 without batch norm is unchanged.
    pub fn fold_batch_norm(self) -> Self {
        VggNet {
            stages: self
                .stages
                .into_iter()
                .map(|stage| stage.into_iter().map(ConvBlock::fold).collect())
                .collect(),
            ..self
        }
    }

    /// Logits over the ages: `[batch, 3, size, size]` → `[batch, 101]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = images;
        for stage in &self.stages {
            for block in stage {
                x = block.forward(x);
            }
            x = self.pool.forward(x); // halves height and width
        }
        let x = self.global_pool.forward(x); // [batch, channels, 1, 1]
        let [batch, channels, _, _] = x.dims();
        let x = x.reshape([batch, channels]);
        self.head.forward(x) // [batch, 101]
    }

    /// The number of trained parameters: conv and linear weights and biases, batch-norm γ and β.
    /// Unlike [`Module::num_params`], it leaves out batch norm's running mean and variance,
    /// which are statistics rather than parameters (and are not counted in the papers).
    pub fn trainable_params(&self) -> usize {
        let blocks: usize = self
            .stages
            .iter()
            .flatten()
            .map(|block| {
                let norm = block
                    .norm
                    .as_ref()
                    .map_or(0, |n| n.gamma.num_params() + n.beta.num_params());
                block.conv.num_params() + norm
            })
            .sum();
        blocks + self.head.num_params()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temperature stored in the head divides the logits: the distributions become
    /// `p^(1/T)` renormalised, for the VGG-style streams and the pretrained one.
    #[test]
    fn a_temperature_in_the_head_sharpens_the_distributions() {
        use burn::tensor::Distribution;
        let device = Device::flex();
        device.seed(5);
        let x = Tensor::<4>::random([2, 3, 64, 64], Distribution::Uniform(-1.0, 1.0), &device);
        for net in [
            AgeNetConfig::new(Architecture::TinyAgeNet)
                .with_input_size(64)
                .init(&device)
                .unwrap(),
            AgeNet::Pretrained(
                crate::networks::pretrained::PretrainedAgeNetConfig::new()
                    .init(&device)
                    .widen_to_age_grid(),
            ),
        ] {
            let plain: Vec<f32> = net
                .distribution(x.clone())
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let sharp: Vec<f32> = net
                .with_temperature(0.5)
                .distribution(x.clone())
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            for (p, q) in plain.chunks(AGE_BINS).zip(sharp.chunks(AGE_BINS)) {
                let expected = crate::distribution::sharpen(p, 0.5);
                let worst = expected
                    .iter()
                    .zip(q)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(worst < 1e-5, "{worst}");
            }
        }
    }
    use burn::tensor::TensorData;

    fn params(architecture: Architecture) -> usize {
        AgeNetConfig::new(architecture)
            .init(&Device::flex())
            .unwrap()
            .trainable_params()
    }

    #[test]
    fn parameter_counts_match_the_papers() {
        // DLDL-v2 (Gao et al. 2018, Table 1): ThinAgeNet 3.7 M, TinyAgeNet 0.9 M parameters.
        assert_eq!(params(Architecture::ThinAgeNet), 3_708_229);
        assert_eq!(params(Architecture::TinyAgeNet), 934_869);
        // VGG-16's 13 conv layers hold 14,714,688 parameters; the head adds 512·101 + 101.
        assert_eq!(params(Architecture::Vgg16), 14_714_688 + 512 * 101 + 101);
    }

    #[test]
    fn conv_layers_describe_the_built_network() {
        let device = Device::flex();
        for (architecture, size) in [(Architecture::TinyAgeNet, 64), (Architecture::Vgg16, 48)] {
            let AgeNet::Vgg(model) = AgeNetConfig::new(architecture)
                .with_input_size(size)
                .init(&device)
                .unwrap()
            else {
                panic!("{architecture:?} builds a VGG-style network");
            };
            let built: Vec<_> = model
                .stages
                .iter()
                .flat_map(|stage| stage.iter().map(|b| b.conv.weight.dims()))
                .collect();
            let layers = conv_layers(architecture, size);
            let described: Vec<_> = layers
                .iter()
                .map(|l| [l.out_channels, l.in_channels, 3, 3])
                .collect();
            assert_eq!(described, built);
            // Each stage's last conv is pooled, and the next stage runs at half the size.
            let pooled: Vec<usize> = layers.iter().filter(|l| l.pooled).map(|l| l.size).collect();
            assert_eq!(pooled, [size, size / 2, size / 4, size / 8, size / 16]);
        }
        assert!(conv_layers(Architecture::Pretrained, 64).is_empty());
    }

    #[test]
    fn output_is_a_distribution_for_any_input_size() {
        let device = Device::flex();
        for size in [32, 48] {
            let model = AgeNetConfig::new(Architecture::TinyAgeNet)
                .with_input_size(size)
                .init(&device)
                .unwrap();
            let x = Tensor::<4>::ones([2, 3, size, size], &device);
            let p = model.distribution(x);
            assert_eq!(p.dims(), [2, AGE_BINS]);
            let sums: Vec<f32> = p.sum_dim(1).try_into_vec_as().unwrap();
            assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-4));
        }
    }

    #[test]
    fn folding_batch_norm_keeps_the_distribution() {
        // A few training-mode passes move the running statistics away from 0 and 1, so the fold
        // has work to do.
        let device = Device::flex();
        let autodiff = device.clone().autodiff();
        let size = 32;
        let model = AgeNetConfig::new(Architecture::TinyAgeNet)
            .with_input_size(size)
            .init(&autodiff)
            .unwrap();
        let x = |seed: f32, device: &Device| {
            Tensor::<4>::from_data(
                TensorData::new(
                    (0..2 * 3 * size * size)
                        .map(|i| (i as f32 * 0.37 + seed).sin() * 2.0 + 0.5)
                        .collect::<Vec<f32>>(),
                    [2, 3, size, size],
                ),
                device,
            )
        };
        for seed in 0..3 {
            let _ = model.forward(x(seed as f32, &autodiff));
        }
        let model = model.valid();
        let AgeNet::Vgg(ref net) = model else {
            unreachable!()
        };
        let norm = net.stages[0][0].norm.as_ref().unwrap();
        let mean: Vec<f32> = norm.running_mean.value().try_into_vec_as().unwrap();
        assert!(mean.iter().any(|m| m.abs() > 1e-3), "running means moved");
        let before: Vec<f32> = model
            .distribution(x(9.0, &device))
            .try_into_vec_as()
            .unwrap();
        let folded = model.for_inference();
        let AgeNet::Vgg(ref net) = folded else {
            unreachable!()
        };
        assert!(net.stages.iter().flatten().all(|b| b.norm.is_none()));
        let after: Vec<f32> = folded
            .distribution(x(9.0, &device))
            .try_into_vec_as()
            .unwrap();
        let worst = before
            .iter()
            .zip(&after)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-5, "folded and unfolded differ by {worst}");
    }

    #[test]
    fn rejects_small_inputs_and_unknown_names() {
        let config = AgeNetConfig::new(Architecture::TinyAgeNet).with_input_size(16);
        assert_eq!(
            config.init(&Device::flex()).err(),
            Some(DldlError::InputTooSmall(16))
        );
        assert!("resnet50".parse::<Architecture>().is_err());
        assert_eq!("ThinAgeNet".parse(), Ok(Architecture::ThinAgeNet));
        assert_eq!("tiny-age-net".parse(), Ok(Architecture::TinyAgeNet));
        assert_eq!("VGG16".parse(), Ok(Architecture::Vgg16));
        assert_eq!("pretrained".parse(), Ok(Architecture::Pretrained));
        let wrong = AgeNetConfig::for_stream(Architecture::Pretrained, 224);
        assert_eq!(
            wrong.init(&Device::flex()).err(),
            Some(DldlError::WrongInputSize {
                expected: 64,
                found: 224
            })
        );
    }
}
