"""Build helpers shared by the BUILD.bazel files (the counterparts of the CMake functions)."""

def iommud_grpc_proto(name, srcs, grpc = True, deps = [], testonly = False, import_srcs = [],
                      import_dirs = []):
    """C++ (and gRPC) code of `srcs` generated with Debian's protoc and grpc_cpp_plugin.

    The protos import each other relative to this package's directory, and the library exports
    the generated headers the same way (e.g. "iommu/v1/iommu.pb.h" from //proto). Protos of other
    packages they import are `import_srcs` (labels), found under `import_dirs` (paths from the
    workspace root, e.g. "proto/third_party"); their code comes from `deps`.
    """
    outs = []
    for src in srcs:
        base = src[:-len(".proto")]
        outs += [base + ".pb.h", base + ".pb.cc"]
        if grpc:
            outs += [base + ".grpc.pb.h", base + ".grpc.pb.cc"]
    package = native.package_name()
    out_root = "$(GENDIR)/" + package
    grpc_flags = ""
    if grpc:
        grpc_flags = " --grpc_out=%s --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin" % out_root
    native.genrule(
        name = name + "_gen",
        srcs = srcs + import_srcs,
        outs = outs,
        testonly = testonly,
        cmd = ("/usr/bin/protoc -I%s %s -I/usr/include --cpp_out=%s%s " %
               (package, " ".join(["-I" + d for d in import_dirs]), out_root, grpc_flags)) +
              " ".join(["%s/%s" % (package, src) for src in srcs]),
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        includes = ["."],
        testonly = testonly,
        deps = deps + ["//third_party/bazel:grpc"],
    )

def iommud_cc_test(name, srcs, deps = [], **kwargs):
    """A GoogleTest binary with gmock and gtest_main, like CMake's iommud_test()."""
    native.cc_test(
        name = name,
        srcs = srcs,
        deps = deps + ["//third_party/bazel:gtest_main"],
        **kwargs
    )

def iommud_tests(prefix, deps = [], overrides = {}, exclude = [], recursive = False):
    """One GoogleTest binary per `*_test.cc` of this package (glob: new suites are picked up).

    Each test is named `<prefix><file name without .cc>` (e.g. "core_" + "error_test" gives
    core_error_test, the CMake name) and links `deps`. `overrides` maps a file's path in the
    package to attributes that replace the defaults for that one test (a CMake name that differs,
    narrower deps, data). `recursive` also takes the tests of subdirectories without a BUILD file
    of their own (tests/server's rooms); the name is still the file name's.
    """
    srcs = native.glob(["**/*_test.cc" if recursive else "*_test.cc"], exclude = exclude)
    for key in overrides:
        if key not in srcs:
            fail("iommud_tests override for %s, which is no test of this package" % key)
    for src in srcs:
        attrs = {
            "name": prefix + src.split("/")[-1][:-len(".cc")],
            "srcs": [src],
            "deps": deps,
        }
        attrs.update(overrides.get(src, {}))
        iommud_cc_test(**attrs)
