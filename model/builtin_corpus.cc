// The built-in corpus: sentences generated from a small grammar, so there is structure to learn (spelling,
// word order, agreement, punctuation) with no external data and no licence to track.
#include <array>
#include <string>
#include <string_view>

#include "model/data.h"
#include "runtime/rng.h"

namespace weft {
namespace {

constexpr std::array<std::string_view, 12> kNouns = {"cat", "dog", "bird", "fox", "horse", "child",
                                                     "farmer", "teacher", "river", "garden", "ship", "city"};
constexpr std::array<std::string_view, 10> kAdjectives = {"small", "quiet", "brown", "happy", "old",
                                                          "clever", "green", "tired", "bright", "cold"};
constexpr std::array<std::string_view, 10> kVerbs = {"sees", "follows", "likes", "finds", "helps",
                                                     "watches", "visits", "carries", "hears", "paints"};
constexpr std::array<std::string_view, 6> kPlaces = {"near the hill", "by the sea", "in the morning",
                                                     "under the bridge", "at night", "after the rain"};
constexpr std::array<std::string_view, 5> kNumbers = {"two", "three", "four", "five", "six"};

class Draw {
 public:
  explicit Draw(std::uint64_t key) : key_(key) {}
  template <typename List>
  std::string_view pick(const List& list) {
    return list[philox4x32(key_, counter_++).v[0] % list.size()];
  }
  bool chance(unsigned percent) { return philox4x32(key_, counter_++).v[0] % 100 < percent; }

 private:
  std::uint64_t key_;
  std::uint64_t counter_ = 0;
};

void append_noun_phrase(std::string& text, Draw& draw) {
  text += "the ";
  if (draw.chance(60)) {
    text += draw.pick(kAdjectives);
    text += ' ';
  }
  text += draw.pick(kNouns);
}

void append_sentence(std::string& text, Draw& draw) {
  std::string sentence;
  if (draw.chance(20)) {
    sentence += draw.pick(kNumbers);
    sentence += ' ';
    sentence += draw.pick(kNouns);
    sentence += "s rest";
  } else {
    append_noun_phrase(sentence, draw);
    sentence += ' ';
    sentence += draw.pick(kVerbs);
    sentence += ' ';
    append_noun_phrase(sentence, draw);
  }
  if (draw.chance(40)) {
    sentence += ' ';
    sentence += draw.pick(kPlaces);
  }
  sentence[0] = static_cast<char>(sentence[0] - 'a' + 'A');
  text += sentence;
  text += draw.chance(15) ? "!\n" : ". ";
}

}  // namespace

std::unique_ptr<TokenCorpus> make_builtin_corpus() {
  constexpr std::size_t kBytes = 1 << 20;
  Draw draw(rng_key(0, "builtin-corpus"));
  std::string text;
  text.reserve(kBytes + 128);
  while (text.size() < kBytes) append_sentence(text, draw);
  return make_byte_corpus(std::vector<std::uint8_t>(text.begin(), text.end()));
}

}  // namespace weft
