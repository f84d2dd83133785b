// swift-tools-version: 6.1
// Micro-benchmarks of Sluice's per-chunk paths with ordo-one's benchmark: thread CPU,
// wall time, mallocs and, with hardware counters, instructions per chunk. A package of
// its own, so neither the `sluice` binary nor `make test` builds the benchmark
// framework. `make bench-micro` runs it; by hand, from this folder:
//
//     PKG_CONFIG_PATH=$PWD/../.deps/librdkafka/lib/pkgconfig swift package benchmark
import PackageDescription

let package = Package(
    name: "sluice-benchmarks",
    dependencies: [
        // Named: a path package is otherwise known by its folder name, which differs by clone.
        .package(name: "sluice", path: ".."),
        // The malloc interposer alone (malloc counts without jemalloc); the default traits
        // would add the ARC runtime interposer, another package, for metrics not used here.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.5.0"),
    ],
    targets: [
        .executableTarget(
            name: "ChunkPathBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "SluiceWorker", package: "sluice"),
                .product(name: "SluiceGateway", package: "sluice"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            path: "ChunkPathBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
