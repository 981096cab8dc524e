// swift-tools-version:5.9
// One package, several targets. Everything except ResflexCoreML (whole file under #if canImport(CoreML)) builds and
// is tested on Linux; the SwiftUI app lives in App/ (not a target here) and uses these libraries.
import PackageDescription

let package = Package(
    name: "Resflex",
    platforms: [.iOS(.v16), .macOS(.v13)],
    products: [
        .library(name: "ResflexSelector", targets: ["ResflexSelector"]),
        .library(name: "ResflexCore", targets: ["ResflexCore"]),
        .library(name: "ResflexCoreML", targets: ["ResflexCoreML"]),
    ],
    targets: [
        .target(name: "ResflexSelector"),
        .target(name: "ResflexCore", dependencies: ["ResflexSelector"]),
        .target(name: "ResflexCoreML", dependencies: ["ResflexCore"]),
        // The golden vectors, byte-identical copies of tests/golden/*.json, shared by both test targets.
        .target(
            name: "ResflexGolden",
            dependencies: ["ResflexSelector"],
            path: "Tests/Golden",
            resources: [.copy("selector_golden.json"), .copy("preprocess_golden.json")]
        ),
        .testTarget(name: "ResflexSelectorTests", dependencies: ["ResflexSelector", "ResflexGolden"]),
        .testTarget(name: "ResflexCoreTests", dependencies: ["ResflexCore", "ResflexSelector", "ResflexGolden"]),
    ]
)
