//! Gradient checkpointing. A checkpointed block runs its forward without
//! recording a graph, so its activations are freed as soon as it returns, and
//! keeps only its inputs; backward runs the block again, recording, and
//! backpropagates through that copy. Memory drops to about one block's
//! activations at a time, for one more forward pass per step.
//!
//! candle has no "no-grad" mode and a custom op can only return gradients for
//! its own arguments, so two things are done here by hand: adapters read
//! their trainable tensors through [`trainable`] (detached while a block runs
//! unrecorded), and the adapters' gradients found while recomputing are kept
//! aside and merged into the step's gradients by [`backward`].

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, Var};

thread_local! {
    static UNRECORDED: Cell<bool> = const { Cell::new(false) };
    /// Adapter gradients found by recomputations during this thread's backward.
    static ASIDE: RefCell<Vec<(Tensor, Tensor)>> = const { RefCell::new(Vec::new()) };
}

/// A trainable tensor as the running forward should see it: itself while the
/// graph is recorded, detached inside an unrecorded checkpointed block.
pub fn trainable(tensor: &Tensor) -> Tensor {
    if UNRECORDED.get() { tensor.detach() } else { tensor.clone() }
}

/// Runs `f` with trainable tensors detached, restoring the mode after.
fn unrecorded<R>(f: impl FnOnce() -> R) -> R {
    let before = UNRECORDED.replace(true);
    let result = f();
    UNRECORDED.set(before);
    result
}

/// `loss.backward()`, with the gradients that checkpointed blocks found for
/// their adapters added in.
pub fn backward(loss: &Tensor) -> Result<GradStore> {
    ASIDE.with_borrow_mut(Vec::clear);
    let mut grads = loss.backward()?;
    for (tensor, grad) in ASIDE.take() {
        let sum = match grads.get(&tensor) {
            Some(existing) => (existing + grad)?,
            None => grad,
        };
        grads.insert(&tensor, sum);
    }
    Ok(grads)
}

/// A block's forward as a function of its input and an optional second input
/// (the text context, the time embedding).
pub type Block = Arc<dyn Fn(&Tensor, Option<&Tensor>) -> Result<Tensor> + Send + Sync>;

/// `block(x, aux)`, checkpointed. `adapters` are the trainable tensors inside
/// the block. With nothing to differentiate (no adapters, inputs without
/// gradients) it is just the forward.
pub fn checkpointed(x: &Tensor, aux: Option<&Tensor>, adapters: Vec<Tensor>, block: Block) -> Result<Tensor> {
    let aux_tracked = aux.filter(|aux| aux.track_op());
    // A custom op joins the graph only through an argument that does: when
    // neither input does, an adapter tensor stands in the third place.
    let third = match (aux_tracked, adapters.first()) {
        (Some(aux), _) => aux.clone(),
        (None, Some(adapter)) => adapter.clone(),
        (None, None) if x.track_op() => x.clone(),
        (None, None) => return block(x, aux),
    };
    let value = unrecorded(|| block(&x.detach(), aux.map(Tensor::detach).as_ref()))?;
    let op =
        Recompute { block, aux: aux.cloned(), x_tracked: x.track_op(), third_is_aux: aux_tracked.is_some(), adapters };
    value.apply_op3(x, &third, op)
}

/// The graph node of a checkpointed block: forward passes the value on;
/// backward recomputes the block and backpropagates through it.
struct Recompute {
    block: Block,
    aux: Option<Tensor>,
    /// Which inputs want a gradient (an untracked one is not differentiated again).
    x_tracked: bool,
    third_is_aux: bool,
    adapters: Vec<Tensor>,
}

impl CustomOp3 for Recompute {
    fn name(&self) -> &'static str {
        "checkpointed-block"
    }

    fn cpu_fwd(
        &self,
        value: &CpuStorage,
        layout: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        super::nn::copy_of(value, layout)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        value: &candle_core::CudaStorage,
        layout: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        super::nn::copy_of(value, layout)
    }

    fn bwd(
        &self,
        _: &Tensor,
        x: &Tensor,
        _: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let fresh = |t: &Tensor, tracked: bool| -> Result<Tensor> {
            Ok(if tracked { Var::from_tensor(&t.detach())?.as_tensor().clone() } else { t.detach() })
        };
        let x = fresh(x, self.x_tracked)?;
        let aux = self.aux.as_ref().map(|aux| fresh(aux, self.third_is_aux)).transpose()?;
        let output = (self.block)(&x, aux.as_ref())?;
        let grads = (output * grad.detach())?.sum_all()?.backward()?;
        ASIDE.with_borrow_mut(|aside| {
            aside.extend(self.adapters.iter().filter_map(|a| grads.get(a).map(|g| (a.clone(), g.clone()))))
        });
        let aux_grad = if self.third_is_aux { aux.as_ref().and_then(|aux| grads.get(aux)).cloned() } else { None };
        let x_grad = if self.x_tracked { grads.get(&x).cloned() } else { None };
        Ok((None, x_grad, aux_grad))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor, Var};

    use crate::model::builtin::{random_weights, tiny};
    use crate::model::lora::{LoraHost, LoraNetwork};
    use crate::model::unet::{UNet, UNetConfig};

    /// Every adapter gradient and the text context's, with and without
    /// checkpointing, differ by at most 1e-5 of the largest one (f32).
    #[test]
    fn checkpointed_gradients_equal_the_recorded_ones() {
        let device = Device::Cpu;
        let config: UNetConfig = serde_json::from_value(tiny().unet).unwrap();
        let mut unet = UNet::load(random_weights(DType::F32, &device), &config).unwrap();
        let mut layers = Vec::new();
        unet.lora_layers("unet", &mut layers);
        let network = LoraNetwork::create(&layers, 4, 4.0, 7, &device).unwrap();
        network.attach(&mut layers, "test");
        drop(layers);
        let vars = network.vars();
        // PEFT starts B at zero, which would leave every A gradient zero.
        for var in &vars {
            var.set(&Tensor::randn(0f32, 0.1, var.shape(), &device).unwrap()).unwrap();
        }
        let latents = Tensor::randn(0f32, 1.0, (2, 4, 16, 16), &device).unwrap();
        let context = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 77, 32), &device).unwrap()).unwrap();
        let timesteps = Tensor::new(&[100f32, 700.0], &device).unwrap();
        let mut gradients = |checkpointing: bool| -> Vec<Tensor> {
            unet.gradient_checkpointing = checkpointing;
            let prediction = unet.forward(&latents, &timesteps, context.as_tensor(), None).unwrap();
            let loss = (prediction - &latents).unwrap().sqr().unwrap().mean_all().unwrap();
            let grads = super::backward(&loss).unwrap();
            let tensors = vars.iter().map(Var::as_tensor).chain([context.as_tensor()]);
            tensors.map(|t| grads.get(t).expect("a gradient for every adapter and the context").clone()).collect()
        };
        let (recorded, checkpointed) = (gradients(false), gradients(true));
        let largest = |t: &Tensor| t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let scale = recorded.iter().map(largest).fold(0f32, f32::max);
        assert!(scale > 0.0);
        for (i, (a, b)) in recorded.iter().zip(&checkpointed).enumerate() {
            let difference = largest(&(a - b).unwrap()) / scale;
            assert!(difference <= 1e-5, "gradient {i} differs by {difference} of the largest");
        }
    }
}
