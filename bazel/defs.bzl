"""weft's Bazel macros: one place for the flags every C target shares (STYLE.md §1).

Language and warning flags (-std=c17 -Wall -Wextra -Werror) and the sanitizer configs live in
.bazelrc; these macros add what is specific to a kind of target.
"""

load("@rules_cc//cc:defs.bzl", "cc_binary", "cc_library", "cc_test")

WEFT_COPTS = [
    "-fno-strict-aliasing",
    "-Wshadow",
    "-Wformat=2",
    "-Wstrict-prototypes",
    "-Wmissing-prototypes",
    "-Wvla",
]

def weft_cc_library(name, copts = [], **kwargs):
    cc_library(name = name, copts = WEFT_COPTS + copts, **kwargs)

def weft_cc_binary(name, copts = [], **kwargs):
    cc_binary(name = name, copts = WEFT_COPTS + copts, **kwargs)

def weft_cc_test(name, deps = [], copts = [], linkopts = [], size = "small", **kwargs):
    """A Criterion test binary. Criterion prints its summary line; each Test runs in a fork."""
    cc_test(
        name = name,
        # Criterion's Test() macros define functions without prototypes of their own.
        copts = [c for c in WEFT_COPTS if c != "-Wmissing-prototypes"] + copts,
        # Criterion finds its tests in a section of their own, which -c opt's --gc-sections
        # would drop (the binary then runs 0 tests and passes).
        linkopts = linkopts + ["-Wl,--no-gc-sections"],
        deps = deps + ["//third_party:criterion"],
        size = size,
        **kwargs
    )

def weft_cc_fuzz(name, srcs, corpus, deps = [], **kwargs):
    """A libFuzzer target (LLVMFuzzerTestOneInput) that is also a regression test.

    Under --config=fuzz it links libFuzzer; `bazel-bin/test/fuzz/NAME DIR -max_total_time=N`
    fuzzes. In every other build it links test/fuzz/standalone_main.c, and `bazel test` replays
    the seed corpus (and any crash files checked in beside it) through the same function.
    """
    cc_test(
        name = name,
        srcs = srcs,
        copts = WEFT_COPTS,
        deps = deps + select({
            "//bazel:fuzz": [],
            "//conditions:default": ["//test/fuzz:standalone_main"],
        }),
        linkopts = select({
            "//bazel:fuzz": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
        data = corpus,
        args = ["$(locations %s)" % c for c in corpus],
        tags = ["fuzz"],
        size = "small",
        **kwargs
    )

def weft_proto_c_library(name, srcs = [], system_srcs = [], deps = [], visibility = None):
    """Compiles .proto files to C with protoc-c (protobuf-c-compiler) into a cc_library.

    Args:
      name: the cc_library; NAME_srcs is a filegroup of the .proto files, for dependants' imports.
      srcs: .proto files in this package. Imports resolve from the workspace root and from
        /usr/include (libprotobuf-dev ships the well-known types there); the generated header is
        included by its workspace path, "pkg/foo.pb-c.h".
      system_srcs: import paths of .proto files installed under /usr/include that no Debian
        package ships C for, e.g. "google/protobuf/struct.proto". Their C is generated under this
        package and exported with `includes`, so "google/protobuf/struct.pb-c.h" resolves the way
        protoc-c's output for an importing file spells it. Bazel does not track files outside the
        workspace: after upgrading libprotobuf-dev, `bazel clean`.
      deps: other weft_proto_c_library targets whose .proto files srcs import.
      visibility: for the cc_library and the _srcs filegroup.
    """
    stems = [s[:-len(".proto")] for s in srcs + system_srcs]
    outs_c = [s + ".pb-c.c" for s in stems]
    outs_h = [s + ".pb-c.h" for s in stems]
    cmds = []
    if srcs:
        # Workspace files: output paths mirror the workspace path, so C goes to the root of GENDIR.
        cmds.append("protoc-c --proto_path=. --proto_path=/usr/include --c_out=$(GENDIR) " +
                    " ".join(["$(location %s)" % s for s in srcs]))
    if system_srcs:
        # Installed files: output paths mirror the import path, under this package.
        cmds.append("protoc-c --proto_path=/usr/include --c_out=$(RULEDIR) " +
                    " ".join(["/usr/include/" + s for s in system_srcs]))
    native.genrule(
        name = name + "_gen",
        srcs = srcs + [d + "_srcs" for d in deps],
        outs = outs_c + outs_h,
        cmd = " && ".join(cmds),
    )
    native.filegroup(name = name + "_srcs", srcs = srcs, visibility = visibility)
    cc_library(
        name = name,
        srcs = outs_c,
        hdrs = outs_h,
        includes = ["."] if system_srcs else [],
        # protoc-c output is not ours to fix: keep warnings, drop -Werror for it alone.
        copts = ["-Wno-error", "-Wno-unused-parameter"],
        deps = deps + ["//third_party:protobuf_c"],
        visibility = visibility,
    )
