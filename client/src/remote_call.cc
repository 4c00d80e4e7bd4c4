#include "remote_call.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include <torch/autograd.h>
#include <torch/types.h>

#include <hivemind/common/logging.h>
#include <hivemind/common/status.h>
#include <hivemind/common/wait_interrupt.h>

namespace hivemind::client::detail {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Saturating: a huge configured timeout must not overflow the steady clock.
Deadline deadline_after(Milliseconds timeout) {
  const SteadyTime now = SteadyClock::now();
  const auto room = std::chrono::duration_cast<Milliseconds>(SteadyTime::max() - now);
  if (timeout >= room) return Deadline::never();
  return Deadline(now + std::max(timeout, Milliseconds{0}));
}

std::string describe(const ExpertAddress& e) {
  return "expert '" + e.uid + "' at " +
         (e.endpoint.empty() ? std::string("<no endpoint>") : e.endpoint);
}

// Completions of one fan-out. Callbacks only append here: they may run on an I/O thread that must
// not block or do tensor math, so validation happens on the waiting thread. Shared with every
// callback, so an answer arriving after the waiter gave up lands here harmlessly.
class Inbox {
 public:
  struct Completion {
    size_t task;
    Result<std::vector<torch::Tensor>> result;
  };

  void push(size_t task, Result<std::vector<torch::Tensor>> result) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back({task, std::move(result)});
    }
    cv_.notify_one();
  }

  // Everything that arrived, waiting until `deadline` for at least one; empty when the deadline
  // passed. Polls the wait-interrupt hook (which may throw: the callbacks only hold the inbox, so
  // abandoning the wait is safe) while it blocks.
  std::deque<Completion> wait(Deadline deadline) {
    // The lock is held only inside each slice: the hook runs without it.
    wait_polling_interrupt(deadline.at(), [&](SteadyTime until) {
      std::unique_lock lock(mu_);
      return cv_.wait_until(lock, until, [&] { return !queue_.empty(); });
    });
    std::lock_guard lock(mu_);
    return std::exchange(queue_, {});
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Completion> queue_;
};

struct Collected {
  std::vector<std::optional<std::vector<torch::Tensor>>>
      outputs;                     // per task; nullopt: failed or late
  std::vector<Status> failures;    // per task; Ok for successes
  std::vector<int64_t> successes;  // per sample
};

using Dispatch = std::function<void(size_t task, Deadline, ExpertCallback)>;
using Validate = std::function<Status(size_t task, const std::vector<torch::Tensor>&)>;

// hivemind's _collect_responses, batched per expert: wait until every sample has `required[s]`
// successes, then at most `after_k_min` more, never past `hard`; whatever has not answered by then
// counts as failed. A success of a task counts once for each of its samples.
Collected dispatch_and_collect(const CallPlan& plan, const std::vector<size_t>& tasks,
                               const std::vector<int64_t>& required, Deadline hard,
                               std::optional<Milliseconds> after_k_min, const Dispatch& dispatch,
                               const Validate& validate, const char* pass) {
  Collected out;
  out.outputs.resize(plan.tasks.size());
  out.failures.resize(plan.tasks.size());
  out.successes.assign(plan.batch_size, 0);

  Deadline current = hard;
  int64_t pending_samples = 0;
  for (int64_t r : required)
    pending_samples += r > 0 ? 1 : 0;
  auto arm = [&] {
    if (after_k_min) current = std::min(hard, deadline_after(*after_k_min));
  };
  if (pending_samples == 0) arm();

  auto inbox = std::make_shared<Inbox>();
  for (size_t t : tasks) {
    // The callback holds the inbox, not the waiter: it may fire long after this function returned.
    dispatch(t, hard,
             [inbox, t](Result<std::vector<torch::Tensor>> r) { inbox->push(t, std::move(r)); });
  }

  std::vector<char> done(plan.tasks.size(), 0);
  size_t remaining = tasks.size();
  while (remaining > 0) {
    std::deque<Inbox::Completion> batch = inbox->wait(current);
    if (batch.empty()) break;  // the deadline passed
    for (Inbox::Completion& c : batch) {
      if (c.task >= done.size() || done[c.task]) continue;  // a caller that answered twice
      done[c.task] = 1;
      --remaining;
      const ExpertTask& task = plan.tasks[c.task];
      Status status = c.result.status();
      if (status.is_ok()) status = validate(c.task, c.result.value());
      if (!status.is_ok()) {
        // Named once: the network caller's errors already say which call of which expert failed.
        const std::string where = std::string(pass) + " of " + describe(task.expert);
        out.failures[c.task] =
            status.message().starts_with(where) ? std::move(status) : status.with_context(where);
        logger("client")->debug("{}", out.failures[c.task].to_string());
        continue;
      }
      out.outputs[c.task] = std::move(c.result).value();
      for (int64_t s : task.samples) {
        if (++out.successes[s] == required[s] && --pending_samples == 0) arm();
      }
    }
  }
  for (size_t t : tasks) {
    if (!done[t]) {
      out.failures[t] = timeout_error(std::string(pass) + " of " + describe(plan.tasks[t].expert) +
                                      ": no answer before the deadline");
      logger("client")->debug("{}", out.failures[t].to_string());
    }
  }
  return out;
}

// The k_min error: which sample fell short, and why its experts did.
[[noreturn]] void throw_short(const CallPlan& plan, const Collected& got, const CallPolicy& policy,
                              const char* pass, int64_t sample, int64_t required) {
  if (policy.layer == "RemoteExpert" && plan.tasks.size() == 1) {
    // One expert, no routing: its own failure is the whole story.
    const Status& failure = got.failures[0];
    Status(failure.code(), "RemoteExpert " + std::string(pass) + ": " + failure.message())
        .throw_if_error();
  }
  std::string msg = policy.layer + " " + pass + ": sample " + std::to_string(sample) + " got " +
                    std::to_string(got.successes[sample]) + " expert answer(s), needs " +
                    std::to_string(required) + " (" +
                    (std::string(pass) == "forward" ? "k_min" : "backward_k_min") +
                    "); it was routed to " + std::to_string(plan.experts_per_sample[sample]) +
                    " expert(s)";
  if (plan.experts_per_sample[sample] == 0) {
    msg += " because beam search found no live expert for it";
  }
  int listed = 0;
  // The error's code: Timeout when any of the sample's experts was late (or none was asked),
  // otherwise the first failure's (PeerClosed, Unavailable, ...), so callers can tell them apart.
  std::optional<StatusCode> code;
  for (size_t t = 0; t < plan.tasks.size(); ++t) {
    const ExpertTask& task = plan.tasks[t];
    if (!got.failures[t].is_ok() &&
        std::find(task.samples.begin(), task.samples.end(), sample) != task.samples.end()) {
      if (!code || got.failures[t].code() == StatusCode::kTimeout) code = got.failures[t].code();
      if (listed >= 4) continue;
      msg += listed++ ? "; " : ". Failures: ";
      msg += got.failures[t].to_string();
    }
  }
  msg += ". Set allow_zero_outputs to continue with fewer answers.";
  Status(code.value_or(StatusCode::kTimeout), std::move(msg)).throw_if_error();
  throw std::logic_error("unreachable");
}

// "the input" when there is one, "input 1" (counting from 0) among several: how errors name one.
std::string input_name(size_t index, size_t count) {
  return count == 1 ? "the input" : "input " + std::to_string(index);
}

bool all_finite(const torch::Tensor& t) {
  return !t.is_floating_point() || t.isfinite().all().item<bool>();
}

// What an expert answers to one pass, as its errors name it.
struct AnswerKind {
  const char* one;     // "output"
  const char* many;    // "outputs"
  const char* values;  // what non-finite entries are called
};
constexpr AnswerKind kForwardAnswer{"output", "outputs", "values"};
constexpr AnswerKind kBackwardAnswer{"input gradient", "input gradients", "gradients"};

// The one check of an expert's answer, forward or backward: one tensor per expected shape, each of
// that shape, floating where `floating` says (an integer answer is never cast into a float one, nor
// the reverse), and finite when detect_anomalies is on.
Status check_answer(const std::vector<torch::Tensor>& answer,
                    const std::vector<std::vector<int64_t>>& want,
                    const std::vector<bool>& floating, const AnswerKind& kind,
                    bool detect_anomalies) {
  if (answer.size() != want.size()) {
    return protocol_error("returned " + std::to_string(answer.size()) + " " + kind.many +
                          ", expected " + std::to_string(want.size()));
  }
  for (size_t i = 0; i < answer.size(); ++i) {
    const torch::Tensor& tensor = answer[i];
    const std::string which = want.size() == 1 ? "" : " " + std::to_string(i);
    if (!tensor.defined() || tensor.sizes() != torch::IntArrayRef(want[i])) {
      return protocol_error(std::string("returned ") + kind.one + which + " of shape " +
                            (tensor.defined() ? shape_string(tensor.sizes()) : "<undefined>") +
                            ", expected " + shape_string(want[i]));
    }
    if (c10::isFloatingType(tensor.scalar_type()) != floating[i]) {
      return protocol_error(std::string("returned ") + kind.one + which + " of dtype " +
                            c10::toString(tensor.scalar_type()) + ", expected " +
                            (floating[i] ? "a floating one" : "no floating one"));
    }
    if (detect_anomalies && !all_finite(tensor)) {
      return protocol_error(std::string("returned NaN or Inf ") + kind.values + which +
                            " (detect_anomalies)");
    }
  }
  return Status::ok();
}

// The rows `samples` of every input, for one task's request; an undefined `samples` (a whole
// batch) sends the inputs themselves.
std::vector<torch::Tensor> rows_of(const std::vector<torch::Tensor>& inputs,
                                   const torch::Tensor& samples) {
  std::vector<torch::Tensor> rows;
  rows.reserve(inputs.size());
  for (const torch::Tensor& input : inputs) {
    rows.push_back(samples.defined() ? input.index_select(0, samples) : input.detach());
  }
  return rows;
}

// One task that takes every sample, in order, into the only slot (RemoteExpert, or an MoE batch
// that chose one expert): its request is the input itself and its answer is the output, with no
// gather or scatter, which for RemoteExpert's small batches costs more than the call's own tensor
// work.
bool routes_whole_batch_to_one_task(const CallPlan& plan) {
  if (plan.tasks.size() != 1 || plan.max_experts != 1) return false;
  const std::vector<int64_t>& samples = plan.tasks[0].samples;
  if (static_cast<int64_t>(samples.size()) != plan.batch_size) return false;
  for (size_t i = 0; i < samples.size(); ++i) {
    if (samples[i] != static_cast<int64_t>(i)) return false;
  }
  return true;
}

// The experts' outputs in this call (per-sample shape and declared dtype): the policy's one shape
// (a floating output), else the ones its layer learned from the experts' descriptions, else one
// floating output of the first input's shape.
OutputSchemas output_schemas(const CallPlan& plan, const CallPolicy& policy, ExpertCaller& caller,
                             Deadline deadline, const torch::Tensor& input) {
  if (policy.output_shape) return {{.shape = *policy.output_shape}};
  if (policy.learned_output_schemas) {
    // Every forward after the first finds them known: no list of the experts to build.
    std::optional<OutputSchemas> schemas = policy.learned_output_schemas->known();
    if (!schemas) {
      std::vector<ExpertAddress> experts;
      experts.reserve(plan.tasks.size());
      for (const ExpertTask& task : plan.tasks)
        experts.push_back(task.expert);
      schemas = policy.learned_output_schemas->resolve(experts, caller, deadline);
    }
    if (schemas) {
      if (schemas->empty()) {
        throw std::invalid_argument(policy.layer +
                                    ": the experts describe no output (outputs_schema is empty)");
      }
      return *std::move(schemas);
    }
  }
  return {{.shape = input.sizes().slice(1).vec()}};
}

struct CallState : torch::CustomClassHolder {
  std::shared_ptr<const CallPlan> plan;
  std::shared_ptr<ExpertCaller> caller;
  std::shared_ptr<const CallPolicy> policy;
  bool whole_batch = false;                 // routes_whole_batch_to_one_task: no index tensors
  std::vector<torch::Tensor> sample_index;  // per task, int64 on the input's device
  std::vector<torch::Tensor> slot_index;
  std::vector<size_t> alive;               // tasks that answered forward
  std::vector<int64_t> forward_successes;  // per sample
  // Per output, zeros of its shape (one expanded scalar): the gradient of an output the loss
  // did not use.
  std::vector<torch::Tensor> output_like;
};

class RemoteCallMany : public torch::autograd::Function<RemoteCallMany> {
 public:
  // `dummy` requires grad (hivemind's DUMMY): the call is recorded by autograd even when no input
  // does, so the experts' backward runs and their optimizers step also when the remote layer is
  // the first of the model.
  static variable_list forward(AutogradContext* ctx, at::TensorList input_list,
                               const torch::Tensor& dummy, c10::intrusive_ptr<CallState> state) {
    const CallPlan& plan = *state->plan;
    const CallPolicy& policy = *state->policy;
    const std::vector<torch::Tensor> inputs = input_list.vec();
    const torch::Tensor& input = inputs.front();  // sets the outputs' device (and default shape)
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (policy.detect_anomalies && !all_finite(inputs[i])) {
        throw std::invalid_argument(policy.layer + ": " + input_name(i, inputs.size()) +
                                    " has NaN or Inf values (detect_anomalies)");
      }
    }
    // One deadline for the whole pass, the experts' descriptions included.
    const Deadline hard = deadline_after(policy.forward_timeout);
    const OutputSchemas out_schemas = output_schemas(plan, policy, *state->caller, hard, input);
    std::vector<torch::TensorOptions> out_options;
    for (const protocol::TensorSchema& schema : out_schemas)
      out_options.push_back(input.options().dtype(answer_dtype(schema.dtype, inputs)));

    const torch::Device device = input.device();
    state->whole_batch = routes_whole_batch_to_one_task(plan);
    if (!state->whole_batch) {
      for (const ExpertTask& task : plan.tasks) {
        state->sample_index.push_back(torch::tensor(task.samples, torch::kLong).to(device));
        state->slot_index.push_back(torch::tensor(task.slots, torch::kLong).to(device));
      }
    }
    std::vector<size_t> all(plan.tasks.size());
    for (size_t t = 0; t < all.size(); ++t)
      all[t] = t;

    const Dispatch dispatch = [&](size_t t, Deadline deadline, ExpertCallback done) {
      const torch::Tensor samples = state->whole_batch ? torch::Tensor() : state->sample_index[t];
      state->caller->forward(plan.tasks[t].expert, rows_of(inputs, samples), deadline,
                             std::move(done));
    };
    std::vector<bool> floating_outputs;
    for (const torch::TensorOptions& options : out_options)
      floating_outputs.push_back(c10::isFloatingType(options.dtype().toScalarType()));
    const Validate validate = [&](size_t t, const std::vector<torch::Tensor>& answer) {
      std::vector<std::vector<int64_t>> want;
      for (const protocol::TensorSchema& schema : out_schemas) {
        want.push_back({static_cast<int64_t>(plan.tasks[t].samples.size())});
        want.back().insert(want.back().end(), schema.shape.begin(), schema.shape.end());
      }
      return check_answer(answer, want, floating_outputs, kForwardAnswer, policy.detect_anomalies);
    };
    const std::vector<int64_t> required(plan.batch_size, policy.k_min);
    Collected got = dispatch_and_collect(plan, all, required, hard, policy.timeout_after_k_min,
                                         dispatch, validate, "forward");

    int64_t total = 0;
    for (int64_t s = 0; s < plan.batch_size; ++s) {
      total += got.successes[s];
      if (got.successes[s] < policy.k_min && !policy.allow_zero_outputs) {
        throw_short(plan, got, policy, "forward", s, policy.k_min);
      }
    }
    if (total == 0 && plan.batch_size > 0 && !policy.allow_zero_outputs) {
      timeout_error(policy.layer +
                    " forward: no expert answered for any sample (allow_zero_outputs is off)")
          .throw_if_error();
    }

    state->forward_successes = std::move(got.successes);
    variable_list outputs;  // then the mask
    torch::Tensor mask;
    if (state->whole_batch && got.outputs[0]) {
      state->alive.push_back(0);
      // Detached: the answer's wire header may carry the expert's requires_grad; autograd's history
      // for it is this Function's.
      for (size_t j = 0; j < out_options.size(); ++j)
        outputs.push_back((*got.outputs[0])[j].detach().to(out_options[j]).unsqueeze(1));
      mask = torch::ones({plan.batch_size, 1}, input.options().dtype(torch::kBool));
    } else {
      // Zeros and mask false where an expert failed (for a whole batch, allow_zero_outputs let it
      // through).
      for (size_t j = 0; j < out_schemas.size(); ++j) {
        std::vector<int64_t> full{plan.batch_size, plan.max_experts};
        full.insert(full.end(), out_schemas[j].shape.begin(), out_schemas[j].shape.end());
        outputs.push_back(torch::zeros(full, out_options[j]));
      }
      mask = torch::zeros({plan.batch_size, plan.max_experts}, input.options().dtype(torch::kBool));
      for (size_t t = 0; t < plan.tasks.size(); ++t) {
        if (!got.outputs[t]) continue;
        state->alive.push_back(t);
        for (size_t j = 0; j < outputs.size(); ++j) {
          outputs[j].index_put_({state->sample_index[t], state->slot_index[t]},
                                (*got.outputs[t])[j].to(out_options[j]));
        }
        mask.index_put_({state->sample_index[t], state->slot_index[t]}, true);
      }
    }
    for (const torch::Tensor& out : outputs)
      state->output_like.push_back(torch::zeros({}, out.options()).expand(out.sizes()));

    ctx->save_for_backward(inputs);
    ctx->saved_data["state"] = c10::IValue::make_capsule(state);
    // Outputs without a gradient: the mask, and ids or masks an expert returns.
    variable_list constant{mask};
    for (const torch::Tensor& out : outputs) {
      if (!c10::isFloatingType(out.scalar_type())) constant.push_back(out);
    }
    ctx->mark_non_differentiable(constant);
    outputs.push_back(mask);
    return outputs;
  }

  // One gradient per forward argument: each input's, then none for `dummy` and `state`. `grads`
  // holds one per output, then the mask's.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const std::vector<torch::Tensor> inputs = ctx->get_saved_variables();
    variable_list grad_inputs(inputs.size() + 2);
    auto state =
        c10::static_intrusive_pointer_cast<CallState>(ctx->saved_data["state"].toCapsule());
    const size_t num_outputs = state->output_like.size();
    if (std::none_of(grads.begin(), grads.begin() + static_cast<std::ptrdiff_t>(num_outputs),
                     [](const torch::Tensor& g) { return g.defined(); })) {
      return grad_inputs;
    }
    const CallPlan& plan = *state->plan;
    const CallPolicy& policy = *state->policy;
    std::vector<torch::Tensor> grad_outputs(num_outputs);
    for (size_t j = 0; j < num_outputs; ++j) {
      grad_outputs[j] = grads[j].defined() ? grads[j] : state->output_like[j];
      if (policy.detect_anomalies && !all_finite(grad_outputs[j])) {
        throw std::invalid_argument(
            policy.layer + ": the output gradients have NaN or Inf values (detect_anomalies)");
      }
    }

    // hivemind sends grad_outputs already scaled by each expert's weight: autograd of the weighted
    // sums did exactly that to `grad_outputs`.
    const Dispatch dispatch = [&](size_t t, Deadline deadline, ExpertCallback done) {
      std::vector<torch::Tensor> expert_grads;
      expert_grads.reserve(num_outputs);
      for (const torch::Tensor& g : grad_outputs) {
        expert_grads.push_back(state->whole_batch
                                   ? g.select(1, 0)
                                   : g.index({state->sample_index[t], state->slot_index[t]}));
      }
      state->caller->backward(plan.tasks[t].expert,
                              state->whole_batch ? inputs : rows_of(inputs, state->sample_index[t]),
                              std::move(expert_grads), deadline, std::move(done));
    };
    std::vector<bool> floating_inputs;
    for (const torch::Tensor& input : inputs)
      floating_inputs.push_back(c10::isFloatingType(input.scalar_type()));
    const Validate validate = [&](size_t t, const std::vector<torch::Tensor>& answer) {
      std::vector<std::vector<int64_t>> want;
      for (const torch::Tensor& input : inputs) {
        want.push_back(input.sizes().vec());
        want.back()[0] = static_cast<int64_t>(plan.tasks[t].samples.size());
      }
      return check_answer(answer, want, floating_inputs, kBackwardAnswer, policy.detect_anomalies);
    };
    // backward_k_min counts among the experts that answered forward: a sample that kept one expert
    // (k_min = 1) cannot get two gradients back.
    std::vector<int64_t> required(plan.batch_size);
    for (int64_t s = 0; s < plan.batch_size; ++s) {
      required[s] = std::min(policy.backward_k_min, state->forward_successes[s]);
    }
    Collected got =
        dispatch_and_collect(plan, state->alive, required, deadline_after(policy.backward_timeout),
                             policy.timeout_after_k_min, dispatch, validate, "backward");
    for (int64_t s = 0; s < plan.batch_size; ++s) {
      if (got.successes[s] < required[s] && !policy.allow_zero_outputs) {
        throw_short(plan, got, policy, "backward", s, required[s]);
      }
    }

    // Experts that failed backward (or forward) count as constants: they add nothing. Inputs
    // without a gradient (ids, masks: the experts answer zeros for them) get none.
    for (size_t i = 0; i < inputs.size(); ++i) {
      const torch::Tensor& input = inputs[i];
      if (!c10::isFloatingType(input.scalar_type())) continue;
      if (state->whole_batch) {
        grad_inputs[i] = got.outputs[0] ? (*got.outputs[0])[i].detach().to(input.options())
                                        : torch::zeros_like(input);
        continue;
      }
      grad_inputs[i] = torch::zeros_like(input);
      for (size_t t : state->alive) {
        if (!got.outputs[t]) continue;
        grad_inputs[i].index_add_(0, state->sample_index[t],
                                  (*got.outputs[t])[i].to(input.options()));
      }
    }
    return grad_inputs;
  }
};

// The tensor every call passes as RemoteCallMany's `dummy`: empty, requiring grad, never written.
// Leaked on purpose: no LibTorch object is destroyed during static destruction.
const torch::Tensor& dummy_requiring_grad() {
  static const auto* dummy = new torch::Tensor(torch::empty({0}).requires_grad_(true));
  return *dummy;
}

}  // namespace

CallPlan plan_calls(const std::vector<std::vector<ChosenExpert>>& chosen) {
  CallPlan plan;
  plan.batch_size = static_cast<int64_t>(chosen.size());
  plan.experts_per_sample.reserve(chosen.size());
  std::unordered_map<std::string, size_t> task_of;
  for (int64_t s = 0; s < plan.batch_size; ++s) {
    const auto& experts = chosen[s];
    plan.experts_per_sample.push_back(static_cast<int64_t>(experts.size()));
    plan.max_experts = std::max(plan.max_experts, static_cast<int64_t>(experts.size()));
    for (int64_t j = 0; j < static_cast<int64_t>(experts.size()); ++j) {
      auto [it, inserted] = task_of.try_emplace(experts[j].expert.uid, plan.tasks.size());
      if (inserted) plan.tasks.push_back({experts[j].expert, {}, {}});
      plan.tasks[it->second].samples.push_back(s);
      plan.tasks[it->second].slots.push_back(j);
    }
  }
  return plan;
}

CallResult call_experts(const std::vector<torch::Tensor>& inputs,
                        std::shared_ptr<const CallPlan> plan, std::shared_ptr<ExpertCaller> caller,
                        std::shared_ptr<const CallPolicy> policy) {
  if (inputs.empty()) throw std::invalid_argument(policy->layer + ": no input");
  for (size_t i = 0; i < inputs.size(); ++i) {
    const torch::Tensor& input = inputs[i];
    const std::string name = input_name(i, inputs.size());
    if (!input.defined())
      throw std::invalid_argument(policy->layer + ": " + name + " is undefined");
    if (input.dim() < 1 || input.size(0) != plan->batch_size) {
      throw std::invalid_argument(
          policy->layer + ": " + name +
          (input.dim() < 1 ? " is a scalar" : " has batch size " + std::to_string(input.size(0))) +
          ", the routing has " + std::to_string(plan->batch_size) + " samples");
    }
    if (input.device() != inputs.front().device()) {
      throw std::invalid_argument(policy->layer + ": " + name + " is on " + input.device().str() +
                                  ", the first input on " + inputs.front().device().str() +
                                  ": every input must be on one device");
    }
  }
  auto state = c10::make_intrusive<CallState>();
  state->plan = std::move(plan);
  state->caller = std::move(caller);
  state->policy = std::move(policy);
  variable_list out =
      RemoteCallMany::apply(at::TensorList(inputs), dummy_requiring_grad(), std::move(state));
  CallResult result;
  result.mask = out.back();
  out.pop_back();
  result.outputs = std::move(out);
  return result;
}

std::string shape_string(torch::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace hivemind::client::detail
