"""`describe()`: what ngclearn's `ExpSTDPSynapse.help()` returns, for expstdp."""


def describe() -> dict:
  """The synapse's compartments, dynamics and hyperparameters, shaped like
  ngclearn's `help()`: {name: properties, "compartments": {inputs, states,
  analytics, outputs}, "dynamics": str, "hyperparameters": {name: str}}."""
  return {
      "ExpSTDPSynapse": {
          "synapse_type": "ExpSTDPSynapse - an adaptable synaptic transformation of inputs "
                          "into output signals, adjusted by trace-based spike-timing-dependent "
                          "plasticity (STDP) with exponential weight dependence",
      },
      "compartments": {
          "inputs": {
              "inputs": "(B, N) input signal of forward",
              "pre_spike": "(B, N) pre-synaptic spikes s_pre (LTD term)",
              "post_spike": "(B, M) post-synaptic spikes s_post (LTP and x_tar terms)",
              "pre_trace": "(B, N) pre-synaptic traces x_pre (LTP term)",
              "post_trace": "(B, M) post-synaptic traces x_post (LTD term)",
          },
          "states": {
              "weights": "(N, M) synaptic efficacies W",
              "biases": "() or (1, M) bias added to the outputs",
              "weight_mask": "(N, M) or (1, 1) bool structural connectivity",
              "eta": "() global learning rate (multiplies A_plus and A_minus terms)",
          },
          "analytics": {"d_weights": "(N, M) raw dW of the last evolve"},
          "outputs": {"outputs": "(B, M) (inputs @ W) * resist_scale + biases"},
      },
      "dynamics": (
          "outputs = (inputs @ W) * resist_scale + biases; "
          "dW = A_plus * [exp(-beta W) * (x_pre^T s_post) - exp(-beta (w_bound - W)) * x_tar "
          "* colsum(s_post)] - A_minus * exp(-beta W) * (s_pre^T x_post); "
          "W' = mask * clip(W + eta dW - W / tau_w, w_eps, w_bound - w_eps)"
      ),
      "hyperparameters": {
          "shape": "(N, M): number of inputs x number of outputs",
          "batch_size": "B, the batch axis of inputs, spikes and traces",
          "weight_init": "initializer f(key, shape, dtype) for W",
          "bias_init": "initializer f(key, (1, M), dtype) for the biases, or None",
          "p_conn": "probability that a connection exists (absent ones stay 0)",
          "weight_mask": "structural mask; 0 marks an absent connection",
          "eta": "initial global learning rate",
          "A_plus": "strength of long-term potentiation (LTP)",
          "A_minus": "strength of long-term depression (LTD), >= 0",
          "exp_beta": "strength of the exponential weight dependence (beta)",
          "pretrace_target": "target pre-synaptic trace x_tar (depression at post spikes)",
          "w_bound": "upper weight bound w_bound",
          "w_eps": "clip margin: weights stay in [w_eps, w_bound - w_eps]",
          "tau_w": "weight decay time constant (0: no decay)",
          "resist_scale": "scale applied to the output of forward",
      },
  }
