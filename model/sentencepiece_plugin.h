// The C interface of libweft_sentencepiece.so, the plugin through which weft uses SentencePiece.
//
// Why a plugin: Debian's libsentencepiece carries its own copy of protobuf-lite and exports its symbols, which
// collide with libprotobuf's (weft's checkpoint manifest) when both are linked into one program: the process
// crashes while protobuf registers its descriptors. Loaded with dlopen(RTLD_LOCAL | RTLD_DEEPBIND), SentencePiece
// binds to its own copy and stays out of the program's global symbol scope.
//
// Every function returns 0 on success; on failure, nonzero with *error a malloc'ed message. Buffers it returns are
// malloc'ed; release them with weft_spm_free.
#pragma once

#include <cstddef>

extern "C" {
void* weft_spm_load(const char* model, std::size_t size, char** error);  // a processor, or null with *error
void weft_spm_unload(void* processor);
int weft_spm_pieces(void* processor);
// `options`: SentencePiece trainer flags as "name=value" lines (a value may hold spaces, e.g. the input's path).
int weft_spm_train(const char* options, char** model, std::size_t* size, char** error);
int weft_spm_encode(void* processor, const char* text, std::size_t size, int** ids, std::size_t* count, char** error);
int weft_spm_decode(void* processor, const int* ids, std::size_t count, char** text, std::size_t* size, char** error);
void weft_spm_free(void* buffer);
}
