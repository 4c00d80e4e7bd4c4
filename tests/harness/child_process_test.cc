// ChildProcess with real programs (/bin/sh, /bin/cat, /bin/sleep): streams, environment, stdin,
// deadlines, signals, output files, and the child's death with its spawning thread.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <signal.h>

#include <hivemind/harness/child_process.h>

namespace hivemind {
namespace {

using namespace std::chrono_literals;

Deadline soon() {
  return Deadline::after(10s);
}

ChildOptions command(std::vector<std::string> argv) {
  ChildOptions options;
  options.argv = std::move(argv);
  return options;
}

ChildOptions shell(const std::string& script) {
  return command({"/bin/sh", "-c", script});
}

TEST(ChildProcess, ReadsStdoutAndStderrLinesAndTheExitCode) {
  ChildOptions options = shell("echo out1; echo err1 >&2; echo out2; exit 3");
  options.stderr_to = ChildOutput::kPipe;
  auto child = ChildProcess::spawn(options);
  ASSERT_TRUE(child.is_ok()) << child.status().to_string();
  EXPECT_EQ(child->read_line(soon(), ChildStream::kStderr).value(), "err1");
  EXPECT_EQ(child->read_line(soon()).value(), "out1");
  EXPECT_EQ(child->read_line(soon()).value(), "out2");
  EXPECT_EQ(child->wait(soon()).value(), 3);
  EXPECT_FALSE(child->running());
  auto after_end = child->read_line(soon());
  EXPECT_EQ(after_end.status().code(), StatusCode::kUnavailable);
}

TEST(ChildProcess, EnvironmentOverridesReplaceInheritedValues) {
  ::setenv("HIVEMIND_CHILD_TEST_VALUE", "inherited", 1);
  ChildOptions options = shell("echo \"$HIVEMIND_CHILD_TEST_VALUE $HIVEMIND_CHILD_TEST_EXTRA\"");
  options.env = {{"HIVEMIND_CHILD_TEST_VALUE", "over"}, {"HIVEMIND_CHILD_TEST_EXTRA", "added"}};
  auto child = ChildProcess::spawn(options);
  ASSERT_TRUE(child.is_ok());
  EXPECT_EQ(child->read_line(soon()).value(), "over added");
  EXPECT_EQ(child->wait(soon()).value(), 0);
  ::unsetenv("HIVEMIND_CHILD_TEST_VALUE");
}

TEST(ChildProcess, StdinIsAPipeUntilClosed) {
  auto child = ChildProcess::spawn(command({"/bin/cat"}));
  ASSERT_TRUE(child.is_ok());
  ASSERT_TRUE(child->write("ping\n").is_ok());
  EXPECT_EQ(child->read_line(soon()).value(), "ping");
  child->close_stdin();  // cat sees end-of-file and exits
  EXPECT_EQ(child->wait(soon()).value(), 0);
}

TEST(ChildProcess, ReadLineContainingSkipsOtherLines) {
  auto child =
      ChildProcess::spawn(shell("echo starting; echo 'listening on tcp://x:1'; echo more"));
  ASSERT_TRUE(child.is_ok());
  EXPECT_EQ(child->read_line_containing("listening", soon()).value(), "listening on tcp://x:1");
  EXPECT_EQ(child->read_line(soon()).value(), "more");
}

TEST(ChildProcess, WaitsEndAtTheirDeadline) {
  auto child = ChildProcess::spawn(command({"/bin/sleep", "30"}));
  ASSERT_TRUE(child.is_ok());
  EXPECT_EQ(child->read_line(Deadline::after(20ms)).status().code(), StatusCode::kTimeout);
  EXPECT_EQ(child->wait(Deadline::after(20ms)).status().code(), StatusCode::kTimeout);
  EXPECT_TRUE(child->running());
  child->signal(SIGTERM);
  EXPECT_EQ(child->wait(soon()).value(), 128 + SIGTERM);
}

TEST(ChildProcess, AStoppedChildIsStillKilledByTheDestructor) {
  pid_t pid = -1;
  {
    auto child = ChildProcess::spawn(command({"/bin/sleep", "30"}));
    ASSERT_TRUE(child.is_ok());
    pid = child->pid();
    child->signal(SIGSTOP);
  }
  // Reaped by the destructor: the pid no longer names a child of ours.
  EXPECT_EQ(::kill(pid, 0), -1);
}

TEST(ChildProcess, BothStreamsCanGoToOneFile) {
  auto dir =
      std::filesystem::temp_directory_path() / ("hivemind-child-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  ChildOptions options = shell("echo to-out; echo to-err >&2");
  options.stdout_to = ChildOutput::kFile;
  options.stderr_to = ChildOutput::kFile;
  options.output_file = (dir / "child.log").string();
  auto child = ChildProcess::spawn(options);
  ASSERT_TRUE(child.is_ok());
  EXPECT_EQ(child->wait(soon()).value(), 0);
  std::ifstream in(options.output_file);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), "to-out\nto-err\n");
  std::filesystem::remove_all(dir);
}

TEST(ChildProcess, AMissingProgramFailsAtSpawn) {
  auto child = ChildProcess::spawn(command({"/nonexistent/hivemind-program"}));
  ASSERT_FALSE(child.is_ok());
  EXPECT_NE(child.status().to_string().find("cannot start"), std::string::npos);
}

TEST(ChildProcess, DiesWithTheThreadThatSpawnedIt) {
  ChildProcess child;
  std::thread spawner([&] {
    auto spawned = ChildProcess::spawn(command({"/bin/sleep", "30"}));
    ASSERT_TRUE(spawned.is_ok());
    child = std::move(*spawned);
  });
  spawner.join();  // the spawning thread is gone: the kernel sends the child SIGKILL
  ASSERT_TRUE(child.running());
  EXPECT_EQ(child.wait(soon()).value(), 128 + SIGKILL);
}

TEST(ChildProcess, OutlivesItsThreadWhenAsked) {
  ChildProcess child;
  std::thread spawner([&] {
    ChildOptions options = command({"/bin/cat"});
    options.die_with_parent = false;
    auto spawned = ChildProcess::spawn(options);
    ASSERT_TRUE(spawned.is_ok());
    child = std::move(*spawned);
  });
  spawner.join();
  ASSERT_TRUE(child.write("still here\n").is_ok());
  EXPECT_EQ(child.read_line(soon()).value(), "still here");
  child.close_stdin();
  EXPECT_EQ(child.wait(soon()).value(), 0);
}

}  // namespace
}  // namespace hivemind
