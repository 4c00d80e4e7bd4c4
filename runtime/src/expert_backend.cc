#include <cerrno>
#include <cmath>

#include <fcntl.h>
#include <fmt/format.h>
#include <torch/autograd.h>
#include <torch/nn.h>
#include <torch/optim.h>
#include <torch/serialize.h>
#include <torch/types.h>
#include <torch/utils.h>
#include <unistd.h>

#include <hivemind/common/logging.h>
#include <hivemind/runtime/expert_backend.h>

#include "torch_errors.h"

namespace hivemind::runtime {

namespace {

using detail::guarded;

bool is_floating(torch::ScalarType t) {
  return c10::isFloatingType(t);
}

std::vector<TensorSchema> with_compression(std::vector<TensorSchema> schemas,
                                           const ExpertBackendOptions& o) {
  for (TensorSchema& s : schemas) {
    // The 8-bit and half schemes apply to floats only; other tensors travel as they are (as
    // hivemind).
    const bool compressible = quant::is_floating(s.dtype);
    s.compression = compressible ? o.compression : quant::Scheme::kNone;
    s.block_size = o.block_size;
  }
  return schemas;
}

// Writes through a file descriptor so the bytes can be fsync'ed before the rename makes them
// visible.
Status write_atomically(
    const std::filesystem::path& file,
    const std::function<void(const std::function<size_t(const void*, size_t)>&)>& produce) {
  std::error_code ec;
  const std::filesystem::path dir =
      file.parent_path().empty() ? std::filesystem::path(".") : file.parent_path();
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return Status(StatusCode::kIoError,
                  fmt::format("create_directories {}: {}", dir.string(), ec.message()));
  const std::filesystem::path tmp =
      dir / fmt::format(".{}.tmp.{}", file.filename().string(), ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno_error(fmt::format("open {}", tmp.string()), errno);
  int write_errno = 0;
  produce([&](const void* data, size_t size) -> size_t {
    const char* p = static_cast<const char*>(data);
    size_t left = size;
    while (left > 0 && write_errno == 0) {
      const ssize_t n = ::write(fd, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        write_errno = errno;
        break;
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
    return size - left;
  });
  if (write_errno == 0 && ::fsync(fd) != 0) write_errno = errno;
  ::close(fd);
  if (write_errno != 0) {
    std::filesystem::remove(tmp, ec);
    return errno_error(fmt::format("write {}", tmp.string()), write_errno);
  }
  if (::rename(tmp.c_str(), file.c_str()) != 0) {
    const int err = errno;
    std::filesystem::remove(tmp, ec);
    return errno_error(fmt::format("rename {} -> {}", tmp.string(), file.string()), err);
  }
  // Make the rename itself durable.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::ok();
}

}  // namespace

std::function<double(int64_t)> linear_warmup_schedule(int64_t warmup_steps, int64_t total_steps) {
  return [warmup_steps, total_steps](int64_t step) {
    if (step < warmup_steps)
      return static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
    if (total_steps <= warmup_steps) return 1.0;
    return std::max(0.0, static_cast<double>(total_steps - step) /
                             static_cast<double>(total_steps - warmup_steps));
  };
}

std::filesystem::path checkpoint_path(const std::filesystem::path& dir, const std::string& uid) {
  return dir / (uid + ".pt");
}

ExpertBackend::ExpertBackend(std::string uid, std::shared_ptr<ExpertModule> module,
                             ExpertBackendOptions options)
    : uid_(std::move(uid)), module_(std::move(module)), options_(std::move(options)) {}

Result<std::shared_ptr<ExpertBackend>> ExpertBackend::create(std::string uid,
                                                             std::shared_ptr<ExpertModule> module,
                                                             ExpertBackendOptions options) {
  if (module == nullptr) return invalid_argument_error("ExpertBackend needs a module");
  if (uid.empty()) return invalid_argument_error("ExpertBackend needs a uid");
  const OptimizerOptions& o = options.optimizer;
  if (!(o.lr >= 0) || !std::isfinite(o.lr))
    return invalid_argument_error(fmt::format("bad learning rate {}", o.lr));
  if (o.clip_grad_norm < 0) return invalid_argument_error("clip_grad_norm must be >= 0");
  std::shared_ptr<ExpertBackend> backend(
      new ExpertBackend(std::move(uid), std::move(module), std::move(options)));
  backend->inputs_ = with_compression(backend->module_->input_schema(), backend->options_);
  backend->outputs_ = with_compression(backend->module_->output_schema(), backend->options_);
  HIVEMIND_RETURN_IF_ERROR(guarded(
      "moving expert " + backend->uid_ + " to " + backend->options_.device.str(), [&]() -> Status {
        backend->module_->to(backend->options_.device);
        return Status::ok();
      }));
  HIVEMIND_RETURN_IF_ERROR(backend->build_optimizer());
  return backend;
}

Status ExpertBackend::build_optimizer() {
  const OptimizerOptions& o = options_.optimizer;
  std::vector<torch::Tensor> params;
  for (const auto& p : module_->parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  if (o.name == "none" || params.empty()) {
    if (o.name != "none" && o.name != "sgd" && o.name != "adam" && o.name != "adamw") {
      return invalid_argument_error(
          fmt::format("unknown optimizer '{}' (sgd, adam, adamw, none)", o.name));
    }
    return Status::ok();
  }
  if (o.name == "sgd") {
    optimizer_ = std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(o.lr).momentum(o.momentum).weight_decay(o.weight_decay));
  } else if (o.name == "adam") {
    optimizer_ = std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(o.lr)
                                                                  .betas({o.beta1, o.beta2})
                                                                  .eps(o.eps)
                                                                  .weight_decay(o.weight_decay));
  } else if (o.name == "adamw") {
    optimizer_ = std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(o.lr)
                                                                   .betas({o.beta1, o.beta2})
                                                                   .eps(o.eps)
                                                                   .weight_decay(o.weight_decay));
  } else {
    return invalid_argument_error(
        fmt::format("unknown optimizer '{}' (sgd, adam, adamw, none)", o.name));
  }
  return Status::ok();
}

std::vector<TensorSchema> ExpertBackend::backward_schema() const {
  std::vector<TensorSchema> all = inputs_;
  all.insert(all.end(), outputs_.begin(), outputs_.end());
  return all;
}

Result<int64_t> ExpertBackend::check_forward(const std::vector<torch::Tensor>& inputs) const {
  return check_tensors(inputs, inputs_, fmt::format("expert '{}' forward input", uid_),
                       options_.detect_anomalies);
}

Result<int64_t> ExpertBackend::check_backward(
    const std::vector<torch::Tensor>& inputs_and_grads) const {
  const size_t n_in = inputs_.size();
  if (inputs_and_grads.size() != n_in + outputs_.size()) {
    return invalid_argument_error(
        fmt::format("expert '{}' backward: got {} tensor(s), expected {} input(s) followed by {} "
                    "output gradient(s)",
                    uid_, inputs_and_grads.size(), n_in, outputs_.size()));
  }
  const std::vector<torch::Tensor> inputs(inputs_and_grads.begin(),
                                          inputs_and_grads.begin() + n_in);
  const std::vector<torch::Tensor> grads(inputs_and_grads.begin() + n_in, inputs_and_grads.end());
  HIVEMIND_ASSIGN_OR_RETURN(
      int64_t batch, check_tensors(inputs, inputs_, fmt::format("expert '{}' backward input", uid_),
                                   options_.detect_anomalies));
  HIVEMIND_ASSIGN_OR_RETURN(
      int64_t grad_batch,
      check_tensors(grads, outputs_, fmt::format("expert '{}' backward output gradient", uid_),
                    options_.detect_anomalies));
  if (grad_batch != batch) {
    return invalid_argument_error(
        fmt::format("expert '{}' backward: the inputs have batch size {} but the output "
                    "gradients have batch size {}",
                    uid_, batch, grad_batch));
  }
  return batch;
}

Result<std::vector<torch::Tensor>> ExpertBackend::to_device(
    std::vector<torch::Tensor> tensors) const {
  for (torch::Tensor& t : tensors) {
    if (t.device() != options_.device) t = t.to(options_.device, /*non_blocking=*/true);
  }
  return tensors;
}

Result<std::vector<torch::Tensor>> ExpertBackend::forward(std::vector<torch::Tensor> inputs) {
  return guarded(
      fmt::format("expert '{}' forward", uid_), [&]() -> Result<std::vector<torch::Tensor>> {
        HIVEMIND_ASSIGN_OR_RETURN(inputs, to_device(std::move(inputs)));
        std::lock_guard lock(mutex_);
        torch::NoGradGuard no_grad;
        std::vector<torch::Tensor> outputs = module_->forward(inputs);
        HIVEMIND_RETURN_IF_ERROR(check_tensors(outputs, outputs_,
                                               fmt::format("expert '{}' forward output", uid_),
                                               options_.detect_anomalies)
                                     .status());
        return outputs;
      });
}

Result<std::vector<torch::Tensor>> ExpertBackend::backward(
    std::vector<torch::Tensor> inputs_and_grads) {
  return guarded(
      fmt::format("expert '{}' backward", uid_), [&]() -> Result<std::vector<torch::Tensor>> {
        if (inputs_and_grads.size() != inputs_.size() + outputs_.size()) {
          return invalid_argument_error(
              fmt::format("expert '{}' backward: got {} tensors, expected {} inputs + {} grads",
                          uid_, inputs_and_grads.size(), inputs_.size(), outputs_.size()));
        }
        HIVEMIND_ASSIGN_OR_RETURN(inputs_and_grads, to_device(std::move(inputs_and_grads)));
        std::lock_guard lock(mutex_);
        torch::AutoGradMode grad_mode(true);
        std::vector<torch::Tensor> inputs;
        inputs.reserve(inputs_.size());
        for (size_t i = 0; i < inputs_.size(); ++i) {
          torch::Tensor x = inputs_and_grads[i].detach();
          if (is_floating(x.scalar_type())) x.requires_grad_(true);
          inputs.push_back(std::move(x));
        }
        std::vector<torch::Tensor> outputs = module_->forward(inputs);
        if (outputs.size() != outputs_.size()) {
          return internal_error(fmt::format("expert '{}' returned {} outputs, its schema has {}",
                                            uid_, outputs.size(), outputs_.size()));
        }
        std::vector<torch::Tensor> roots;
        std::vector<torch::Tensor> grads;
        for (size_t i = 0; i < outputs.size(); ++i) {
          if (!outputs[i].requires_grad()) continue;
          roots.push_back(outputs[i]);
          grads.push_back(inputs_and_grads[inputs_.size() + i]);
        }
        // The one clear of the parameter gradients per batch, before autograd accumulates into
        // them: it also covers a batch that failed halfway through, and a second clear after the
        // step would be one more pass over every gradient for nothing (LibTorch 1.13's zero_grad
        // writes zeros; the gradients stay allocated either way).
        if (optimizer_) optimizer_->zero_grad();
        if (!roots.empty()) torch::autograd::backward(roots, grads);
        std::vector<torch::Tensor> grad_inputs;
        grad_inputs.reserve(inputs.size());
        for (torch::Tensor& x : inputs) {
          torch::Tensor g = x.grad();
          grad_inputs.push_back(g.defined() ? g : torch::zeros_like(x));
        }
        if (optimizer_) {
          const OptimizerOptions& o = options_.optimizer;
          const double lr = o.lr * (o.lr_schedule ? o.lr_schedule(update_count_) : 1.0);
          for (auto& group : optimizer_->param_groups())
            group.options().set_lr(lr);
          if (o.clip_grad_norm > 0)
            torch::nn::utils::clip_grad_norm_(module_->parameters(), o.clip_grad_norm);
          optimizer_->step();
        }
        ++update_count_;
        return grad_inputs;
      });
}

int64_t ExpertBackend::update_count() const {
  std::lock_guard lock(mutex_);
  return update_count_;
}

std::vector<torch::Tensor> ExpertBackend::parameters() const {
  std::lock_guard lock(mutex_);
  std::vector<torch::Tensor> out;
  for (const auto& p : module_->parameters())
    out.push_back(p.detach().to(torch::kCPU).clone());
  return out;
}

Status ExpertBackend::save_checkpoint(const std::filesystem::path& file) const {
  return guarded(
      fmt::format("checkpoint of expert '{}' to {}", uid_, file.string()), [&]() -> Status {
        torch::serialize::OutputArchive archive;
        {
          std::lock_guard lock(mutex_);
          archive.write("uid", c10::IValue(uid_));
          archive.write("expert_cls", c10::IValue(module_->expert_cls()));
          archive.write("optimizer_name", c10::IValue(options_.optimizer.name));
          archive.write("update_count", torch::tensor(update_count_, torch::kInt64));
          for (const auto& item : module_->named_parameters()) {
            archive.write("param." + item.key(), item.value().detach().to(torch::kCPU));
          }
          for (const auto& item : module_->named_buffers()) {
            archive.write("buffer." + item.key(), item.value().detach().to(torch::kCPU),
                          /*is_buffer=*/true);
          }
          if (optimizer_) {
            torch::serialize::OutputArchive opt;
            optimizer_->save(opt);
            archive.write("optimizer", opt);
          }
        }
        return write_atomically(file, [&](const std::function<size_t(const void*, size_t)>& sink) {
          archive.save_to(sink);
        });
      });
}

Status ExpertBackend::load_checkpoint(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec))
    return not_found_error(fmt::format("no checkpoint at {}", file.string()));
  return guarded(
      fmt::format("loading checkpoint {} into expert '{}'", file.string(), uid_), [&]() -> Status {
        torch::serialize::InputArchive archive;
        archive.load_from(file.string(), options_.device);
        c10::IValue cls;
        if (!archive.try_read("expert_cls", cls) || !cls.isString()) {
          return invalid_argument_error(
              fmt::format("{} is not an expert checkpoint", file.string()));
        }
        if (cls.toStringRef() != module_->expert_cls()) {
          return invalid_argument_error(fmt::format("{} holds a '{}' expert, this expert is '{}'",
                                                    file.string(), cls.toStringRef(),
                                                    module_->expert_cls()));
        }
        // Read everything and check shapes first, so a mismatched file changes nothing.
        std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
        auto stage = [&](const std::string& key, const torch::Tensor& target,
                         bool is_buffer) -> Status {
          torch::Tensor read;
          if (!archive.try_read(key, read, is_buffer)) {
            return invalid_argument_error(fmt::format("{} lacks '{}'", file.string(), key));
          }
          if (read.sizes() != target.sizes() || read.scalar_type() != target.scalar_type()) {
            return invalid_argument_error(fmt::format(
                "{}: '{}' is {} {} in the file but {} {} here (another hidden_dim?)", file.string(),
                key, dtype_name(read.scalar_type()), shape_string(read.sizes()),
                dtype_name(target.scalar_type()), shape_string(target.sizes())));
          }
          copies.emplace_back(target, read);
          return Status::ok();
        };
        std::lock_guard lock(mutex_);
        for (const auto& item : module_->named_parameters()) {
          HIVEMIND_RETURN_IF_ERROR(stage("param." + item.key(), item.value(), false));
        }
        for (const auto& item : module_->named_buffers()) {
          HIVEMIND_RETURN_IF_ERROR(stage("buffer." + item.key(), item.value(), true));
        }
        {
          torch::NoGradGuard no_grad;
          for (auto& [target, read] : copies)
            target.copy_(read);
        }
        torch::Tensor count;
        if (archive.try_read("update_count", count)) update_count_ = count.item<int64_t>();
        c10::IValue opt_name;
        torch::serialize::InputArchive opt;
        if (optimizer_ && archive.try_read("optimizer", opt)) {
          if (archive.try_read("optimizer_name", opt_name) && opt_name.isString() &&
              opt_name.toStringRef() == options_.optimizer.name) {
            optimizer_->load(opt);
          } else {
            logger("runtime")->warn(
                "expert '{}': checkpoint optimizer state is for another optimizer; starting it "
                "fresh",
                uid_);
          }
        }
        return Status::ok();
      });
}

}  // namespace hivemind::runtime
