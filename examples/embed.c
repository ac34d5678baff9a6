/* embed.c: trains a config for 20 steps through libweft's C API and prints each step's metrics on rank 0.
 *
 *   cc examples/embed.c -Iinclude -Lbuild -lweft -Wl,-rpath,build -o embed
 *   ./embed configs/tiny.yaml [KEY=VALUE ...]        (or: mpirun -np 2 ./embed configs/tiny.yaml)
 */
#include <stdio.h>
#include <stdlib.h>

#include <weft/weft.h>

/* Every call returns a status; on failure the message says what went wrong, and the status is the exit code. */
static void check(weft_status status) {
  if (status != WEFT_OK) {
    fprintf(stderr, "embed: %s\n", weft_last_error());
    weft_finalize();
    exit((int)status);
  }
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s CONFIG.yaml [KEY=VALUE ...]\n", argv[0]);
    return 2;
  }
  weft_trainer* trainer = NULL;
  check(weft_trainer_create(argv[1], NULL, (const char* const*)(argv + 2), (size_t)(argc - 2), &trainer));
  int rank = 0, world_size = 1;
  check(weft_trainer_rank(trainer, &rank, &world_size));
  size_t tensors = 0;
  check(weft_trainer_tensor_count(trainer, &tensors));
  if (rank == 0) printf("embed: libweft %s, rank 0 of %d holds %zu tensors\n", weft_version(), world_size, tensors);

  for (int step = 0; step < 20; ++step) {
    check(weft_trainer_step(trainer));
    const char* metrics = NULL;
    check(weft_trainer_metrics(trainer, &metrics));
    if (rank == 0) printf("%s\n", metrics);
  }
  weft_trainer_destroy(trainer);
  check(weft_finalize());
  return 0;
}
