//! A 3×3 convolution (stride 1, padding 1, no bias) whose weight gradient, when it trains on
//! burn's CPU backend, is nine shifted matrix products instead of burn's default.
//!
//! burn 0.22 computes a convolution's weight gradient as a convolution of the input by the
//! output gradient (a kernel the size of the image), which the CPU backend runs through im2col.
//! `cargo xtask bench-layers` measured that at 10× PyTorch's time on 64 px layers, and the
//! shifted form 2.7× faster than burn's there (1.4× at 16 px, slower at 8 px and below). So
//! the shifted form is used on the CPU backend with autodiff for layers of at least
//! [`MIN_PIXELS`]; every other device and size takes burn's own `conv2d`. The forward pass and
//! the input gradient are burn's in every case: one model definition, one result up to float
//! rounding.

use burn::{
    backend::{
        Autodiff, BackendTypes, Flex,
        autodiff::{
            NodeId,
            checkpoint::{base::Checkpointer, strategy::NoCheckpointing},
            grads::Gradients,
            ops::{Backward, Ops, OpsKind},
        },
        ops::ModuleOps,
    },
    nn::{PaddingConfig2d, conv::Conv2d},
    tensor::{
        Tensor, module,
        ops::{ConvOptions, PadMode},
    },
};

/// The smallest layer (height × width) that takes the shifted weight gradient: 16 × 16.
pub const MIN_PIXELS: usize = 256;

/// The weight gradient of a 3×3, stride-1, padding-1 convolution of `x` `[n, c, h, w]` whose
/// output gradient is `grad` `[n, co, h, w]`, as nine matrix products. The input is padded and
/// flattened row by row, so that each kernel tap is one contiguous shift of it; the output
/// gradient is padded to the same row length, and its zero padding columns cancel the rows'
/// wrap-around.
pub fn weight_grad_shifted(x: Tensor<4>, grad: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let co = grad.dims()[1];
    let row = w + 2;
    let len = h * row;
    let x = x
        .pad((1, 1, 1, 2), PadMode::Constant(0.0))
        .reshape([n, c, (h + 3) * row]);
    let grad = grad
        .pad((0, 2, 0, 0), PadMode::Constant(0.0))
        .reshape([n, co, len]);
    let taps = (0..9)
        .map(|tap| {
            let shift = (tap / 3) * row + tap % 3;
            let x = x.clone().slice([0..n, 0..c, shift..shift + len]);
            grad.clone()
                .matmul(x.swap_dims(1, 2))
                .sum_dim(0)
                .reshape([co, c])
        })
        .collect();
    Tensor::stack::<3>(taps, 2).reshape([co, c, 3, 3])
}

fn options() -> ConvOptions<2> {
    ConvOptions::new([1, 1], [1, 1], [1, 1], 1)
}

type Cpu = Autodiff<Flex, NoCheckpointing>;
type FlexTensor = <Flex as BackendTypes>::FloatTensorPrimitive;

#[derive(Debug)]
struct ShiftedConv3x3;

impl Backward<Flex, 2> for ShiftedConv3x3 {
    type State = (NodeId, NodeId);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_state, weight_state) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
        let weight = checkpointer.retrieve_node_output::<FlexTensor>(weight_state);
        if let Some(node) = node_x {
            let g = <Flex as ModuleOps<Flex>>::conv2d_x_backward(
                x.clone(),
                weight.clone(),
                grad.clone(),
                options(),
            );
            grads.register::<Flex>(node.id, g);
        }
        if let Some(node) = node_weight {
            let g = weight_grad_shifted(
                Tensor::from_primitive::<Flex>(x),
                Tensor::from_primitive::<Flex>(grad),
            );
            let g = g
                .try_into_primitive::<Flex>()
                .expect("the weight gradient of a CPU tensor stays on the CPU");
            grads.register::<Flex>(node.id, g);
        }
    }
}

/// `conv` applied to `x`: through [`conv3x3`] where `conv` is a bias-free 3×3 convolution of
/// stride 1 and "same" padding (every conv of the streams with batch norm), else
/// `Conv2d::forward`.
pub fn forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let plain_3x3 = conv.bias.is_none()
        && conv.kernel_size == [3, 3]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && matches!(conv.padding, PaddingConfig2d::Same);
    if plain_3x3 {
        conv3x3(x, conv.weight.val())
    } else {
        conv.forward(x)
    }
}

/// `x` `[n, c, h, w]` convolved with `weight` `[co, c, 3, 3]`, stride 1, padding 1, no bias.
pub fn conv3x3(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    if h * w >= MIN_PIXELS
        && let (Ok(xa), Ok(wa)) = (
            x.clone().try_into_primitive::<Cpu>(),
            weight.clone().try_into_primitive::<Cpu>(),
        )
    {
        let out = match ShiftedConv3x3
            .prepare::<NoCheckpointing>([xa.node(), wa.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&xa);
                let weight_state = prep.checkpoint(&wa);
                let (xp, _) = xa.into_parts();
                let (wp, _) = wa.into_parts();
                prep.finish(
                    (x_state, weight_state),
                    <Flex as ModuleOps<Flex>>::conv2d(xp, wp, None, options()),
                )
            }
            OpsKind::UnTracked(prep) => {
                let (xp, _) = xa.into_parts();
                let (wp, _) = wa.into_parts();
                prep.finish(<Flex as ModuleOps<Flex>>::conv2d(xp, wp, None, options()))
            }
        };
        return Tensor::from_primitive::<Cpu>(out);
    }
    module::conv2d(x, weight, None, options())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    /// The largest difference between `a` and `b`, relative to `a`'s largest magnitude.
    fn relative(a: Tensor<4>, b: Tensor<4>) -> f32 {
        let scale = a.clone().abs().max().into_scalar::<f32>();
        (a - b).abs().max().into_scalar::<f32>() / scale
    }

    #[test]
    fn gradients_match_burns_convolution() {
        let device = Device::flex().autodiff();
        // 20 × 16 takes the shifted weight gradient (not square, so rows and columns cannot be
        // confused); 8 × 8 falls back to burn's own.
        for (n, c, co, h, w) in [(3, 5, 7, 20, 16), (2, 4, 6, 8, 8)] {
            let x =
                Tensor::<4>::random([n, c, h, w], Distribution::Default, &device).require_grad();
            let weight =
                Tensor::<4>::random([co, c, 3, 3], Distribution::Default, &device).require_grad();
            let weighting = Tensor::<4>::random([n, co, h, w], Distribution::Default, &device);
            let ours = conv3x3(x.clone(), weight.clone());
            let burns = module::conv2d(x.clone(), weight.clone(), None, options());
            let grads_ours = (ours.clone() * weighting.clone()).sum().backward();
            let grads_burns = (burns.clone() * weighting).sum().backward();
            assert!(relative(burns, ours) < 1e-5);
            let dw = relative(
                weight.grad(&grads_burns).unwrap(),
                weight.grad(&grads_ours).unwrap(),
            );
            let dx = relative(x.grad(&grads_burns).unwrap(), x.grad(&grads_ours).unwrap());
            assert!(
                dw < 1e-5 && dx < 1e-5,
                "{h}×{w}: weight {dw:e}, input {dx:e}"
            );
        }
    }

    #[test]
    fn the_shifted_weight_gradient_is_burns() {
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 3, 17, 19], Distribution::Default, &device);
        let grad = Tensor::<4>::random([2, 4, 17, 19], Distribution::Default, &device);
        let weight = Tensor::<4>::zeros([4, 3, 3, 3], &device);
        let burns = module::conv2d_weight_backward(x.clone(), weight, grad.clone(), options());
        assert!(relative(burns, weight_grad_shifted(x, grad)) < 1e-5);
    }

    #[test]
    fn only_plain_bias_free_3x3_convs_take_it() {
        use burn::nn::conv::Conv2dConfig;
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::random([2, 3, 16, 16], Distribution::Default, &device);
        for config in [
            Conv2dConfig::new([3, 4], [3, 3]).with_padding(PaddingConfig2d::Same),
            Conv2dConfig::new([3, 4], [3, 3]).with_stride([2, 2]),
            Conv2dConfig::new([3, 4], [5, 5]).with_padding(PaddingConfig2d::Same),
        ] {
            for conv in [
                config.clone().with_bias(false).init(&device),
                config.with_bias(true).init(&device),
            ] {
                // The output equals `Conv2d::forward`'s whichever path it takes (a stride or a
                // kernel `conv3x3` does not handle would change its shape or values).
                let ours = forward(&conv, x.clone());
                let burns = conv.forward(x.clone());
                assert_eq!(ours.dims(), burns.dims());
                assert!(relative(burns, ours) < 1e-5);
            }
        }
    }

    #[test]
    fn without_autodiff_it_is_burns_convolution() {
        let device = Device::flex();
        let x = Tensor::<4>::random([1, 2, 16, 16], Distribution::Default, &device);
        let weight = Tensor::<4>::random([3, 2, 3, 3], Distribution::Default, &device);
        let burns = module::conv2d(x.clone(), weight.clone(), None, options());
        assert!(relative(burns, conv3x3(x, weight)) < 1e-6);
    }
}
