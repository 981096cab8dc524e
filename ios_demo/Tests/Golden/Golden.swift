import Foundation

/// The golden vectors shared by Python, Kotlin and Swift: byte-identical copies of tests/golden/*.json
/// (tests/test_golden_copies.py checks them).
public enum Golden {
    /// The bytes of one golden file, e.g. `Golden.data("selector_golden")`.
    public static func data(_ name: String) throws -> Data {
        guard let url = Bundle.module.url(forResource: name, withExtension: "json") else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSLocalizedDescriptionKey: "golden file \(name).json is not a resource"])
        }
        return try Data(contentsOf: url)
    }
}
