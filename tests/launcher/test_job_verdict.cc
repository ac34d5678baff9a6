// The exit code weft launch gives a job, from what each rank reported and how mpirun ended (issue 13, items 1, 2, 12).
#include <catch2/catch.hpp>

#include "launcher/job_verdict.h"

using namespace weft;
using How = RankFate::How;

namespace {

RankFate returned(int code) { return {How::kReturned, code, 100, ""}; }
RankFate aborted(int code) { return {How::kAborted, code, 101, ""}; }
RankFate vanished(long pid) { return {How::kVanished, 0, pid, ""}; }

}  // namespace

TEST_CASE("every rank exiting 2 is exit 2, although mpirun (told not to abort on a non-zero exit) returns 0") {
  const JobVerdict verdict = decide_job_verdict({returned(2), returned(2)}, MpirunEnd{0, 0});
  CHECK(verdict.code == 2);
  CHECK_THAT(verdict.reason, Catch::Contains("ranks 0, 1 exited with code 2"));
}

TEST_CASE("ranks killed by a signal make the job exit 3 naming them, never 137 or 0") {
  const JobVerdict all = decide_job_verdict({vanished(41), vanished(42)}, MpirunEnd{std::nullopt, 9});
  CHECK(all.code == 3);
  CHECK_THAT(all.reason, Catch::Contains("ranks 0, 1 (pid 41, 42) ended without an exit code"));
  // One rank killed, the survivors timed out and aborted: mpirun reports the killed rank's 137.
  const JobVerdict one = decide_job_verdict({aborted(3), vanished(7), aborted(3)}, MpirunEnd{137, 0});
  CHECK(one.code == 3);
  CHECK_THAT(one.reason, Catch::Contains("ranks 0, 2 ended the job"));
}

TEST_CASE("the reason of a job that aborted ends with the first aborting rank's own message") {
  RankFate first = aborted(3), second = aborted(3);
  first.message = "weft: rank 0 of 3: did not complete split #0 (group world) within comm.timeout_s = 4 s";
  second.message = "weft: rank 2 of 3: did not complete split #0";
  const JobVerdict verdict = decide_job_verdict({first, vanished(7), second}, MpirunEnd{std::nullopt, 9});
  CHECK(verdict.reason == "ranks 0, 2 ended the job (exit code 3): " + first.message);
  // A rank that gave no reason leaves the message to the next one that did.
  first.message.clear();
  CHECK_THAT(decide_job_verdict({first, second}, MpirunEnd{3, 0}).reason, Catch::EndsWith(": " + second.message));
  CHECK(decide_job_verdict({aborted(2)}, MpirunEnd{2, 0}).reason == "rank 0 ended the job (exit code 2)");
}

TEST_CASE("an abort's own code wins: a damaged checkpoint is 2 and an internal error 1, whatever mpirun says") {
  CHECK(decide_job_verdict({aborted(2), aborted(2)}, MpirunEnd{137, 0}).code == 2);
  CHECK(decide_job_verdict({aborted(1), vanished(5)}, MpirunEnd{1, 0}).code == 1);
  CHECK(decide_job_verdict({aborted(1), aborted(3)}, MpirunEnd{1, 0}).code == 3);  // a dead peer is named first
}

TEST_CASE("ranks that all finished succeed even when mpirun, told to stop, returns non-zero") {
  const JobVerdict verdict = decide_job_verdict({returned(0), returned(0)}, MpirunEnd{1, 0});
  CHECK(verdict.code == 0);
  CHECK(verdict.reason.empty());
}

TEST_CASE("mixed codes: 3 before any other, then the lowest rank's, a job the launcher ended is 3") {
  CHECK(decide_job_verdict({returned(0), returned(1), returned(3)}, MpirunEnd{0, 0}).code == 3);
  CHECK(decide_job_verdict({returned(0), returned(1), returned(2)}, MpirunEnd{0, 0}).code == 1);
  const JobVerdict ended = decide_job_verdict({vanished(3), vanished(4)}, MpirunEnd{std::nullopt, 9},
                                              "rank 1 (pid 4) has been stopped for more than comm.timeout_s = 5 s");
  CHECK(ended.code == 3);
  CHECK_THAT(ended.reason, Catch::Contains("stopped for more than comm.timeout_s"));
}

TEST_CASE("an mpirun that started no rank passes on its own failure") {
  const RankFate none{};
  CHECK(decide_job_verdict({none, none}, MpirunEnd{2, 0}).code == 2);
  CHECK(decide_job_verdict({none, none}, MpirunEnd{0, 0}).code == 1);  // never 0 when nothing ran
  CHECK(decide_job_verdict({returned(0), none}, MpirunEnd{0, 0}).code == 3);
}
