// check_manifest: every number a checkpoint manifest holds, range-checked against the manifest itself and against
// the model it describes (either family) before anything uses it, so a damaged or crafted manifest is refused by name
// instead of crashing a reader, reading outside a file or loading garbage that "verified".
#pragma once

#include <string>

#include "manifest.pb.h"

namespace weft::checkpoint {

// Throws Error(kUsage) naming `manifest_path` and the offending field when: the model is of no known family, or its
// shape is not valid (or too large to describe); the layout does not multiply up or breaks the family's rules; the
// step, loss scale or tokenizer is out of range; the tensors are not exactly the model's, with the shapes its tp gives them; a
// shard path is not a plain file name, or two files share a path or rank; a run names an unknown tensor or state,
// lies outside its tensor, or the runs of a file do not tile it exactly; runs of one tensor and state overlap; or
// any element of any state of any tensor is held by no run (so resume, inspect and export would find a hole).
void check_manifest(const Manifest& manifest, const std::string& manifest_path);

}  // namespace weft::checkpoint
