// swift-tools-version:5.9
import PackageDescription

let package = Package(
    name: "ResflexSelector",
    platforms: [.iOS(.v13), .macOS(.v10_15)],
    products: [
        .library(name: "ResflexSelector", targets: ["ResflexSelector"])
    ],
    targets: [
        .target(name: "ResflexSelector"),
        .testTarget(
            name: "ResflexSelectorTests",
            dependencies: ["ResflexSelector"],
            resources: [.copy("Resources/selector_golden.json")]
        )
    ]
)
