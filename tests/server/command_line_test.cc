// hivemind-server's option layers: flag > environment > config file > default, and the error
// messages.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>

#include <hivemind/common/version.h>
#include <hivemind/runtime/expert_registry.h>
#include <hivemind/server/command_line.h>

namespace hivemind::server {
namespace {

struct Env {
  std::map<std::string, std::string> vars;
  std::optional<std::string> operator()(const std::string& name) const {
    auto it = vars.find(name);
    return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
  }
};

std::filesystem::path write_config(const std::string& name, const std::string& text) {
  auto path =
      std::filesystem::temp_directory_path() / (name + "_" + std::to_string(::getpid()) + ".toml");
  std::ofstream(path) << text;
  return path;
}

TEST(ServerCliTest, FlagsInBothSpellingsAndDefaults) {
  ParsedCommandLine p = parse_command_line(
      {"--expert_pattern", "e.[0:2].[0:2]", "--hidden-dim", "32", "--max_batch_size=128"}, Env{});
  ASSERT_FALSE(p.exit_now) << p.output;
  EXPECT_EQ(p.options.hidden_dim, 32);
  EXPECT_EQ(p.options.max_batch_size, 128);
  EXPECT_EQ(p.options.expert_cls, "ffn");
  EXPECT_EQ(p.options.compression, "block_absmax_u8");
  ParsedCommandLine list = parse_command_line(
      {"--expert_uids", "a.0", "a.1", "--initial-peers", "tcp://h:1,tcp://h:2"}, Env{});
  ASSERT_FALSE(list.exit_now) << list.output;
  EXPECT_EQ(list.options.expert_uids, (std::vector<std::string>{"a.0", "a.1"}));
  EXPECT_EQ(list.options.initial_peers, (std::vector<std::string>{"tcp://h:1", "tcp://h:2"}));
}

TEST(ServerCliTest, PrecedenceFlagOverEnvironmentOverConfigFile) {
  auto config = write_config(
      "hm_cli_prec",
      "hidden_dim = 8\nport = 22001\nexpert_cls = \"ffn_v08\"\nexpert-pattern = \"e.[0:3]\"\n");
  Env env;
  env.vars["HIVEMIND_HIDDEN_DIM"] = "16";
  env.vars["HIVEMIND_PORT"] = "22003";
  env.vars["HIVEMIND_DETECT_ANOMALIES"] = "yes";
  ParsedCommandLine p = parse_command_line({"--config", config.string(), "--port", "22002"}, env);
  ASSERT_FALSE(p.exit_now) << p.output;
  EXPECT_EQ(p.options.port, 22002);                // flag
  EXPECT_EQ(p.options.hidden_dim, 16);             // environment over the file
  EXPECT_EQ(p.options.expert_cls, "ffn_v08");      // file over the default
  EXPECT_EQ(p.options.expert_pattern, "e.[0:3]");  // dashed key
  EXPECT_TRUE(p.options.detect_anomalies);
  std::filesystem::remove(config);
}

TEST(ServerCliTest, PrintConfigIsAValidConfigFile) {
  Env env;
  env.vars["HIVEMIND_EXPERT_UIDS"] = "x.0,x.1";
  ParsedCommandLine p =
      parse_command_line({"--print-config", "--lr", "0.5", "--device", "cpu"}, env);
  ASSERT_TRUE(p.exit_now);
  EXPECT_EQ(p.exit_code, 0);
  EXPECT_NE(p.output.find("lr = 0.5  # flag"), std::string::npos) << p.output;
  EXPECT_NE(p.output.find("expert_uids = [\"x.0\", \"x.1\"]  # env HIVEMIND_EXPERT_UIDS"),
            std::string::npos)
      << p.output;
  EXPECT_NE(p.output.find("hidden_dim = 1024  # default"), std::string::npos) << p.output;
  auto config = write_config("hm_cli_print", p.output);
  ParsedCommandLine again = parse_command_line({"--config", config.string()}, Env{});
  ASSERT_FALSE(again.exit_now) << again.output;
  EXPECT_EQ(again.options.lr, 0.5);
  EXPECT_EQ(again.options.expert_uids, (std::vector<std::string>{"x.0", "x.1"}));
  std::filesystem::remove(config);
}

TEST(ServerCliTest, VersionNeedsNoConfiguration) {
  // No --expert_uids or --expert_pattern, which any other run needs: --version answers first.
  ParsedCommandLine p = parse_command_line({"--version"}, Env{});
  EXPECT_TRUE(p.exit_now);
  EXPECT_EQ(p.exit_code, 0);
  EXPECT_EQ(p.output, "hivemind-server " + std::string(version()) + "\n");
}

TEST(ServerCliTest, BadInputFailsWithWhatToFix) {
  ParsedCommandLine unknown =
      parse_command_line({"--expert_pattern", "e.[0:2]", "--bogus", "1"}, Env{});
  EXPECT_TRUE(unknown.exit_now);
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.output.find("--bogus"), std::string::npos) << unknown.output;

  ParsedCommandLine range =
      parse_command_line({"--expert_pattern", "e.[0:2]", "--port", "70000"}, Env{});
  EXPECT_EQ(range.exit_code, 2);
  EXPECT_NE(range.output.find("--port"), std::string::npos) << range.output;

  Env bad_env;
  bad_env.vars["HIVEMIND_HIDDEN_DIM"] = "wide";
  ParsedCommandLine env = parse_command_line({"--expert_pattern", "e.[0:2]"}, bad_env);
  EXPECT_EQ(env.exit_code, 2);
  EXPECT_NE(env.output.find("hidden_dim (env HIVEMIND_HIDDEN_DIM)"), std::string::npos)
      << env.output;

  auto config = write_config("hm_cli_bad", "hiden_dim = 8\n");
  ParsedCommandLine key =
      parse_command_line({"--expert_pattern", "e.[0:2]", "--config", config.string()}, Env{});
  EXPECT_EQ(key.exit_code, 2);
  EXPECT_NE(key.output.find("unknown key 'hiden_dim'"), std::string::npos) << key.output;
  std::filesystem::remove(config);

  ParsedCommandLine both =
      parse_command_line({"--expert_pattern", "e.[0:2]", "--expert_uids", "e.0", "--min_batch_size",
                          "9", "--max_batch_size", "4"},
                         Env{});
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_NE(both.output.find("exactly one of --expert_uids and --expert_pattern"),
            std::string::npos)
      << both.output;
  EXPECT_NE(both.output.find("--min_batch_size (9)"), std::string::npos) << both.output;

  ParsedCommandLine help = parse_command_line({"--help"}, Env{});
  EXPECT_TRUE(help.exit_now);
  EXPECT_EQ(help.exit_code, 0);
  for (const char* flag : {"--expert_cls",
                           "--hidden_dim",
                           "--num_experts",
                           "--expert_pattern",
                           "--expert_uids",
                           "--max_batch_size",
                           "--min_batch_size",
                           "--device",
                           "--optimizer",
                           "--lr",
                           "--initial_peers",
                           "--host",
                           "--port",
                           "--update_period",
                           "--expiration",
                           "--checkpoint_dir",
                           "--compression",
                           "--stats_report_interval",
                           "HIVEMIND_EXPERT_CLS",
                           "--print-config",
                           "--config"}) {
    EXPECT_NE(help.output.find(flag), std::string::npos) << flag;
  }
}

TEST(ServerCliTest, AdamsBetasAndEpsAreTakenAndChecked) {
  ParsedCommandLine set = parse_command_line({"--expert_pattern", "e.[0:2]", "--optimizer", "adamw",
                                              "--beta1", "0.5", "--beta2", "0.8", "--eps", "1e-3"},
                                             Env{});
  ASSERT_FALSE(set.exit_now) << set.output;
  EXPECT_EQ(set.options.beta1, 0.5);
  EXPECT_EQ(set.options.beta2, 0.8);
  EXPECT_EQ(set.options.eps, 1e-3);
  ParsedCommandLine defaults = parse_command_line({"--expert_pattern", "e.[0:2]"}, Env{});
  EXPECT_EQ(defaults.options.beta1, 0.9);
  EXPECT_EQ(defaults.options.beta2, 0.999);
  EXPECT_EQ(defaults.options.eps, 1e-8);

  ParsedCommandLine beta =
      parse_command_line({"--expert_pattern", "e.[0:2]", "--beta2", "1"}, Env{});
  EXPECT_EQ(beta.exit_code, 2);
  EXPECT_NE(beta.output.find("--beta2 (1) must be in [0, 1)"), std::string::npos) << beta.output;
  ParsedCommandLine eps = parse_command_line({"--expert_pattern", "e.[0:2]", "--eps", "0"}, Env{});
  EXPECT_EQ(eps.exit_code, 2);
  EXPECT_NE(eps.output.find("--eps (0) must be a finite number > 0"), std::string::npos)
      << eps.output;
}

// A program that registers its own class before parsing gets it from the flag, the environment and
// the config file, and listed in --help; an unknown class is refused with the registered ones.
TEST(ServerCliTest, ExpertClassesRegisteredBeforeParsingAreAccepted) {
  ASSERT_TRUE(
      runtime::register_expert_class(
          "cli_custom",
          [](const runtime::ExpertConfig&) -> Result<std::shared_ptr<runtime::ExpertModule>> {
            return unsupported_error("not built by this test");
          })
          .is_ok());
  ParsedCommandLine flag =
      parse_command_line({"--expert_pattern", "e.[0:2]", "--expert_cls", "cli_custom"}, Env{});
  ASSERT_FALSE(flag.exit_now) << flag.output;
  EXPECT_EQ(flag.options.expert_cls, "cli_custom");
  Env env;
  env.vars["HIVEMIND_EXPERT_CLS"] = "cli_custom";
  ParsedCommandLine from_env = parse_command_line({"--expert_pattern", "e.[0:2]"}, env);
  ASSERT_FALSE(from_env.exit_now) << from_env.output;
  EXPECT_EQ(from_env.options.expert_cls, "cli_custom");
  auto config = write_config("hm_cli_custom", "expert_cls = \"cli_custom\"\n");
  ParsedCommandLine from_file =
      parse_command_line({"--expert_pattern", "e.[0:2]", "--config", config.string()}, Env{});
  std::filesystem::remove(config);
  ASSERT_FALSE(from_file.exit_now) << from_file.output;
  EXPECT_EQ(from_file.options.expert_cls, "cli_custom");

  ParsedCommandLine help = parse_command_line({"--help"}, Env{});
  EXPECT_NE(help.output.find("cli_custom"), std::string::npos) << help.output;
  ParsedCommandLine unknown =
      parse_command_line({"--expert_pattern", "e.[0:2]", "--expert_cls", "cli_other"}, Env{});
  EXPECT_TRUE(unknown.exit_now);
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.output.find("cli_other"), std::string::npos) << unknown.output;
  EXPECT_NE(unknown.output.find("cli_custom"), std::string::npos) << unknown.output;
}

// ---- hivemind's command line ----

TEST(ServerCliTest, HivemindFlagNamesAreAliases) {
  ParsedCommandLine p = parse_command_line(
      {"--expert_pattern", "e.[0:2]", "--num_warmup_steps", "100", "--num_training_steps", "1000",
       "--scheduler", "linear", "--initial_peers", "/ip4/10.0.0.1/tcp/31337/p2p/QmPeerId"},
      Env{});
  ASSERT_FALSE(p.exit_now) << p.output;
  EXPECT_EQ(p.options.warmup_steps, 100);
  EXPECT_EQ(p.options.total_steps, 1000);
  EXPECT_EQ(p.options.scheduler, "linear");
  EXPECT_EQ(p.options.initial_peers,
            (std::vector<std::string>{"/ip4/10.0.0.1/tcp/31337/p2p/QmPeerId"}));
  ParsedCommandLine none =
      parse_command_line({"--expert_pattern", "e.[0:2]", "--scheduler", "none"}, Env{});
  ASSERT_FALSE(none.exit_now) << none.output;
  EXPECT_EQ(none.options.scheduler, "none");
  ParsedCommandLine bad =
      parse_command_line({"--expert_pattern", "e.[0:2]", "--scheduler", "cosine"}, Env{});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("--scheduler"), std::string::npos) << bad.output;
}

TEST(ServerCliTest, IdentityPathIsAcceptedWithANotice) {
  ParsedCommandLine p = parse_command_line(
      {"--expert_pattern", "e.[0:2]", "--identity_path", "/home/me/server.id"}, Env{});
  ASSERT_FALSE(p.exit_now) << p.output;
  ASSERT_EQ(p.notices.size(), 1u);
  EXPECT_NE(p.notices[0].find("--identity_path '/home/me/server.id' is ignored"), std::string::npos)
      << p.notices[0];
  EXPECT_NE(p.notices[0].find("identified by their address"), std::string::npos) << p.notices[0];
  EXPECT_TRUE(parse_command_line({"--expert_pattern", "e.[0:2]"}, Env{}).notices.empty());
}

TEST(ServerCliTest, CustomModulePathPointsToTorchScript) {
  Env env;
  env.vars["HIVEMIND_CUSTOM_MODULE_PATH"] = "my_experts.py";
  for (const ParsedCommandLine& p :
       {parse_command_line({"--expert_pattern", "e.[0:2]", "--custom_module_path", "my_experts.py"},
                           Env{}),
        parse_command_line({"--expert_pattern", "e.[0:2]"}, env)}) {
    EXPECT_TRUE(p.exit_now);
    EXPECT_EQ(p.exit_code, 2);
    for (const char* what : {"--custom_module_path 'my_experts.py'", "--expert_cls torchscript",
                             "--module_path", "docs/experts.md"})
      EXPECT_NE(p.output.find(what), std::string::npos) << what << " in " << p.output;
  }
}

TEST(ServerCliTest, BadPeerAddressesAreRefusedAtStart) {
  ParsedCommandLine p = parse_command_line(
      {"--expert_pattern", "e.[0:2]", "--initial_peers", "/ip4/10.0.0.1/udp/31337/quic"}, Env{});
  EXPECT_EQ(p.exit_code, 2);
  EXPECT_NE(p.output.find("--initial_peers: peer address '/ip4/10.0.0.1/udp/31337/quic'"),
            std::string::npos)
      << p.output;
  ParsedCommandLine automatic =
      parse_command_line({"--expert_pattern", "e.[0:2]", "--initial_peers", "auto"}, Env{});
  EXPECT_FALSE(automatic.exit_now) << automatic.output;  // resolved when the server joins
  ParsedCommandLine file = parse_command_line(
      {"--expert_pattern", "e.[0:2]", "--bootstrap_file", "/shared/b.addr"}, Env{});
  ASSERT_FALSE(file.exit_now) << file.output;
  EXPECT_EQ(file.options.bootstrap_file, "/shared/b.addr");
}

TEST(ServerCliTest, HivemindYamlConfigIsRead) {
  auto config = write_config("hm_cli_yaml",
                             "# hivemind's config.yml\n"
                             "---\n"
                             "expert_cls: ffn_v08   # a comment after a value\n"
                             "hidden_dim: 256\n"
                             "expert_pattern: 'expert.[0:4].[0:4]'\n"
                             "num_warmup_steps: 10\n"
                             "num_training_steps: 100\n"
                             "scheduler: linear\n"
                             "identity_path: \"./server.id\"\n"
                             "initial_peers:\n"
                             "  - /ip4/10.0.0.1/tcp/31337\n"
                             "  - tcp://10.0.0.2:31337\n"
                             "detect_anomalies: true\n");
  ParsedCommandLine p = parse_command_line({"--config", config.string()}, Env{});
  std::filesystem::remove(config);
  ASSERT_FALSE(p.exit_now) << p.output;
  EXPECT_EQ(p.options.expert_cls, "ffn_v08");
  EXPECT_EQ(p.options.hidden_dim, 256);
  EXPECT_EQ(p.options.expert_pattern, "expert.[0:4].[0:4]");
  EXPECT_EQ(p.options.warmup_steps, 10);
  EXPECT_EQ(p.options.total_steps, 100);
  EXPECT_EQ(p.options.initial_peers,
            (std::vector<std::string>{"/ip4/10.0.0.1/tcp/31337", "tcp://10.0.0.2:31337"}));
  EXPECT_TRUE(p.options.detect_anomalies);
  EXPECT_EQ(p.notices.size(), 1u);

  // Both forms in one file, flow lists in YAML.
  auto mixed = write_config("hm_cli_mixed", "hidden_dim = 64\nexpert_uids: [a.0, 'a.1']\n");
  ParsedCommandLine m = parse_command_line({"--config", mixed.string()}, Env{});
  std::filesystem::remove(mixed);
  ASSERT_FALSE(m.exit_now) << m.output;
  EXPECT_EQ(m.options.hidden_dim, 64);
  EXPECT_EQ(m.options.expert_uids, (std::vector<std::string>{"a.0", "a.1"}));
}

TEST(ServerCliTest, MalformedConfigLinesNameFileAndLine) {
  const std::map<std::string, std::string> cases = {
      {"hidden_dim: 64\nthis is not a setting\n", ":2: 'this is not a setting' is neither"},
      {"expert_pattern: \"e.[0:2]\nhidden_dim: 1\n", ":1: 'expert_pattern': unclosed \" quote"},
      {"expert_uids = [\"a.0\", \"a.1\"\n", ":1: 'expert_uids': unclosed '['"},
      {"hidden_dim: 64\nhidden_dim: 65\n", ":2: 'hidden_dim' is set again (first on line 1)"},
      {"[server]\nhidden_dim = 64\n", ":1: sections ('[name]') are not supported"},
      {"- a.0\n", ":1: a list item"},
      {"hidden_dim =\n", ":1: 'hidden_dim' has no value"},
      {"expert_pattern: e.[0:2]\nhidden_dim: wide\n", "hidden_dim (config "},
      {"expert_pattern: e.[0:2]\nhidden_dim: [1, 2]\n", "2 values where one belongs"},
      {"expert_pattern: e.[0:2]\n\nhiden_dim: 8\n", ":3: unknown key 'hiden_dim'"},
  };
  for (const auto& [text, expected] : cases) {
    auto config = write_config("hm_cli_malformed", text);
    ParsedCommandLine p = parse_command_line({"--config", config.string()}, Env{});
    std::filesystem::remove(config);
    EXPECT_TRUE(p.exit_now) << text;
    EXPECT_EQ(p.exit_code, 2) << text;
    EXPECT_NE(p.output.find(config.string()), std::string::npos) << text << p.output;
    EXPECT_NE(p.output.find(expected), std::string::npos) << text << " -> " << p.output;
  }
}

TEST(ServerCliTest, DeviceDefaultsToAutoWhichPicksCudaOnlyWhenVisible) {
  ParsedCommandLine p = parse_command_line({"--expert_pattern", "e.[0:2]"}, Env{});
  ASSERT_FALSE(p.exit_now) << p.output;
  EXPECT_EQ(p.options.device, "auto");
  EXPECT_EQ(choose_device("auto", false).device, "cpu");
  EXPECT_NE(choose_device("auto", false).reason.find("no CUDA device visible"), std::string::npos);
  EXPECT_EQ(choose_device("auto", true).device, "cuda");
  EXPECT_EQ(choose_device("cuda:1", false).device, "cuda:1");  // as given: validate() judges it
  // This host: the choice the server logs at start.
  EXPECT_EQ(choose_device("auto", cuda_device_visible()).device,
            cuda_device_visible() ? "cuda" : "cpu");
  ParsedCommandLine mixed =
      parse_command_line({"--expert_pattern", "e.[0:2]", "--device", "auto,cpu"}, Env{});
  EXPECT_EQ(mixed.exit_code, 2);
  EXPECT_NE(mixed.output.find("auto stands alone"), std::string::npos) << mixed.output;
}

TEST(ServerCliTest, TorchScriptOptionsFromFlagsEnvironmentAndConfigFile) {
  ParsedCommandLine flags = parse_command_line(
      {"--expert_pattern", "e.[0:2]", "--expert_cls", "torchscript", "--module_path", "m.pt",
       "--reinit", "--sample_input_shape", "int64:128;512"},
      Env{});
  ASSERT_FALSE(flags.exit_now) << flags.output;
  EXPECT_EQ(flags.options.module_path, "m.pt");
  EXPECT_TRUE(flags.options.reinit);
  EXPECT_EQ(flags.options.sample_inputs,
            (std::vector<runtime::TensorSchema>{{.dtype = quant::DType::kInt64, .shape = {128}},
                                                {.shape = {512}}}));

  Env env;
  env.vars["HIVEMIND_EXPERT_CLS"] = "torchscript";
  env.vars["HIVEMIND_MODULE_PATH"] = "env.pt";
  env.vars["HIVEMIND_REINIT"] = "true";
  env.vars["HIVEMIND_SAMPLE_INPUT_SHAPE"] = "512";
  ParsedCommandLine from_env = parse_command_line({"--expert_pattern", "e.[0:2]"}, env);
  ASSERT_FALSE(from_env.exit_now) << from_env.output;
  EXPECT_EQ(from_env.options.module_path, "env.pt");
  EXPECT_TRUE(from_env.options.reinit);
  EXPECT_EQ(from_env.options.sample_inputs, (std::vector<runtime::TensorSchema>{{.shape = {512}}}));

  auto config = write_config("hm_cli_torchscript",
                             "expert_cls = \"torchscript\"\nmodule_path = \"file.pt\"\n"
                             "reinit = false\nsample_input_shape = \"4,8;bfloat16:16\"\n");
  ParsedCommandLine from_file =
      parse_command_line({"--expert_pattern", "e.[0:2]", "--config", config.string()}, Env{});
  ASSERT_FALSE(from_file.exit_now) << from_file.output;
  EXPECT_EQ(from_file.options.module_path, "file.pt");
  EXPECT_FALSE(from_file.options.reinit);
  EXPECT_EQ(from_file.options.sample_inputs,
            (std::vector<runtime::TensorSchema>{
                {.shape = {4, 8}}, {.dtype = quant::DType::kBFloat16, .shape = {16}}}));
  // --print_config writes them back as a config file that reads the same.
  ParsedCommandLine printed = parse_command_line(
      {"--expert_uids", "e.0", "--config", config.string(), "--print_config"}, Env{});
  std::filesystem::remove(config);
  ASSERT_TRUE(printed.exit_now);
  EXPECT_NE(printed.output.find("sample_input_shape = \"4,8;bfloat16:16\""), std::string::npos)
      << printed.output;
  EXPECT_NE(printed.output.find("reinit = false"), std::string::npos) << printed.output;
  auto again_file = write_config("hm_cli_torchscript_again", printed.output);
  ParsedCommandLine again = parse_command_line({"--config", again_file.string()}, Env{});
  std::filesystem::remove(again_file);
  ASSERT_FALSE(again.exit_now) << again.output;
  EXPECT_EQ(again.options.sample_inputs, from_file.options.sample_inputs);
  EXPECT_EQ(again.options.module_path, "file.pt");
}

TEST(ServerCliTest, MalformedSampleInputShapesAreRefusedNamingThePart) {
  for (const char* bad :
       {"", ";", "512;", ",512", "512,,4", "0", "-4", "4.5", "abc", "1e3", "1234567890", "512 ;x",
        ":512", "float64:512", "Int64:4", "int64:,", "int64:int64:4", "int64;4"}) {
    auto parsed = parse_sample_inputs(bad);
    EXPECT_FALSE(parsed.is_ok()) << "'" << bad << "'";
    if (!parsed.is_ok()) {
      EXPECT_NE(parsed.status().message().find("--sample_input_shape '" + std::string(bad) + "'"),
                std::string::npos)
          << parsed.status().message();
    }
  }
  auto spaced = parse_sample_inputs(" 128 , 512 ; 512");
  ASSERT_TRUE(spaced.is_ok()) << spaced.status().to_string();
  EXPECT_EQ(*spaced, (std::vector<runtime::TensorSchema>{{.shape = {128, 512}}, {.shape = {512}}}));
  EXPECT_EQ(format_sample_inputs(*spaced), "128,512;512");
  const auto dtype_error = parse_sample_inputs("512;float64:4");
  ASSERT_FALSE(dtype_error.is_ok());
  EXPECT_NE(dtype_error.status().message().find("input 1 has dtype 'float64'"), std::string::npos)
      << dtype_error.status().message();
  // Every wire dtype, written back as it was given (float32 without its name).
  const std::string every = "float16:2;bfloat16:3;int64:4;int32:5;uint8:6;bool:7;8;bool:;float32:";
  auto typed = parse_sample_inputs(" int64 : 4 ;" + every);
  ASSERT_TRUE(typed.is_ok()) << typed.status().to_string();
  EXPECT_EQ(format_sample_inputs(*typed), "int64:4;" + every);
  EXPECT_EQ(parse_sample_inputs("float32:8")->at(0), runtime::TensorSchema{.shape = {8}});
  EXPECT_EQ(parse_sample_inputs("int64: ")->at(0),
            (runtime::TensorSchema{.dtype = quant::DType::kInt64, .shape = {}}));

  ParsedCommandLine p =
      parse_command_line({"--expert_pattern", "e.[0:2]", "--expert_cls", "torchscript",
                          "--module_path", "m.pt", "--sample_input_shape", "512;x"},
                         Env{});
  EXPECT_TRUE(p.exit_now);
  EXPECT_EQ(p.exit_code, 2);
  EXPECT_NE(p.output.find("--sample_input_shape '512;x': input 1 has dimension 'x'"),
            std::string::npos)
      << p.output;
  EXPECT_NE(p.output.find("(flag)"), std::string::npos) << p.output;
}

TEST(ServerCliTest, TorchScriptOptionsNeedTheTorchScriptClassAndAFile) {
  ParsedCommandLine no_file =
      parse_command_line({"--expert_pattern", "e.[0:2]", "--expert_cls", "torchscript"}, Env{});
  EXPECT_TRUE(no_file.exit_now);
  EXPECT_EQ(no_file.exit_code, 2);
  EXPECT_NE(no_file.output.find("--expert_cls torchscript needs --module_path"), std::string::npos)
      << no_file.output;
  ParsedCommandLine other = parse_command_line({"--expert_pattern", "e.[0:2]", "--module_path",
                                                "m.pt", "--reinit", "--sample_input_shape", "8"},
                                               Env{});
  EXPECT_TRUE(other.exit_now);
  for (const char* option : {"--module_path", "--reinit", "--sample_input_shape"}) {
    EXPECT_NE(other.output.find(std::string(option) +
                                " only applies with --expert_cls torchscript (the expert class "
                                "is 'ffn')"),
              std::string::npos)
        << option << "\n"
        << other.output;
  }
}

}  // namespace
}  // namespace hivemind::server
