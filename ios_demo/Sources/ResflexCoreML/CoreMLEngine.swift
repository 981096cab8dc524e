// The whole file is Apple-only: on Linux (CI) this target compiles to nothing.
#if canImport(CoreML)
import CoreML
import Foundation
import ResflexCore
import ResflexSelector

/// What went wrong serving a Core ML operating point; the message names the artifact, function and compute unit.
public struct CoreMLEngineError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { return message }
}

/// Runs the Core ML operating points of a verified bundle: one multifunction `.mlpackage` per artifact, compiled
/// once (`MLModel.compileModel(at:)`, cached by the artifact's sha256 under Application Support, so later launches
/// skip it), and one `MLModel` per (function, compute unit), loaded with `MLModelConfiguration.functionName`
/// (iOS 18 / macOS 15) and `computeUnits` from the LUT's compute unit. Thread-safe; loading is slow (do it off the
/// main thread, e.g. `FrameLoop.prepare()` on the inference queue).
@available(iOS 18.0, macOS 15.0, *)
public final class CoreMLEngine: InferenceEngine {
    public let backends: Set<String> = ["coreml"]
    public let bundle: ResflexBundle
    private let cacheFolder: URL
    private let lock = NSLock()
    private var compiled: [String: URL] = [:]  // artifact file → .mlmodelc
    private var models: [String: MLModel] = [:]  // "artifact|function|unit" → model

    /// `cacheFolder`: where compiled models are kept (default: Application Support/resflex-coreml).
    public init(bundle: ResflexBundle, cacheFolder: URL? = nil) throws {
        self.bundle = bundle
        if let folder = cacheFolder {
            self.cacheFolder = folder
        } else {
            let support = try FileManager.default.url(for: .applicationSupportDirectory, in: .userDomainMask,
                                                      appropriateFor: nil, create: true)
            self.cacheFolder = support.appendingPathComponent("resflex-coreml", isDirectory: true)
        }
        try FileManager.default.createDirectory(at: self.cacheFolder, withIntermediateDirectories: true)
    }

    /// The LUT's compute unit → MLComputeUnits.
    public static func computeUnits(_ unit: String) throws -> MLComputeUnits {
        switch unit {
        case "CPU_ONLY": return .cpuOnly
        case "CPU_AND_GPU": return .cpuAndGPU
        case "CPU_AND_NE": return .cpuAndNeuralEngine
        case "ALL": return .all
        default:
            throw CoreMLEngineError("compute unit \(unit) is not a Core ML one (CPU_ONLY, CPU_AND_GPU, CPU_AND_NE, ALL)")
        }
    }

    private func artifactAndEntry(_ point: OperatingPoint) throws -> (ArtifactInfo, EntryInfo) {
        guard let artifact = bundle.artifact(for: point), artifact.backend == "coreml" else {
            throw CoreMLEngineError("\(point.artifact): not a Core ML artifact of manifest.json")
        }
        guard let entry = artifact.entry(named: point.entry) else {
            throw CoreMLEngineError("\(point.artifact): manifest.json lists no function \(point.entry) (it lists "
                + artifact.entries.map { $0.name }.joined(separator: ", ") + ")")
        }
        return (artifact, entry)
    }

    /// Compile the .mlpackage once (per sha256) and keep the .mlmodelc.
    private func compiledURL(_ artifact: ArtifactInfo) throws -> URL {
        lock.lock()
        defer { lock.unlock() }
        if let url = compiled[artifact.file] { return url }
        let source = try bundle.url(of: artifact)  // only verified artifacts
        let destination = cacheFolder.appendingPathComponent(artifact.sha256 + ".mlmodelc", isDirectory: true)
        if !FileManager.default.fileExists(atPath: destination.path) {
            let temporary: URL
            do {
                temporary = try MLModel.compileModel(at: source)
            } catch {
                throw CoreMLEngineError("\(artifact.file): Core ML could not compile it: \(error)")
            }
            _ = try? FileManager.default.removeItem(at: destination)
            try FileManager.default.moveItem(at: temporary, to: destination)
        }
        compiled[artifact.file] = destination
        return destination
    }

    /// The function names the compiled model really has (MLModelAsset, iOS 18), for error messages.
    private func functionNames(_ url: URL) -> [String]? {
        final class Box: @unchecked Sendable {
            var names: [String]? = nil
        }
        let box = Box()
        let semaphore = DispatchSemaphore(value: 0)
        Task.detached {
            if let asset = try? MLModelAsset(url: url) {
                box.names = try? await asset.functionNames
            }
            semaphore.signal()
        }
        semaphore.wait()
        return box.names
    }

    private func model(_ point: OperatingPoint) throws -> (MLModel, EntryInfo) {
        let (artifact, entry) = try artifactAndEntry(point)
        let key = "\(artifact.file)|\(entry.name)|\(point.computeUnit)"
        lock.lock()
        if let m = models[key] {
            lock.unlock()
            return (m, entry)
        }
        lock.unlock()
        let units = try CoreMLEngine.computeUnits(point.computeUnit)
        let url = try compiledURL(artifact)
        let configuration = MLModelConfiguration()
        configuration.computeUnits = units
        configuration.functionName = entry.name
        let m: MLModel
        do {
            m = try MLModel(contentsOf: url, configuration: configuration)
        } catch {
            if let names = functionNames(url), !names.contains(entry.name) {
                throw CoreMLEngineError("\(artifact.file): function \(entry.name) is missing from the .mlpackage "
                    + "(it has \(names.sorted().joined(separator: ", ")))")
            }
            throw CoreMLEngineError("\(artifact.file): function \(entry.name) failed to load for \(point.computeUnit): "
                + "\(error)")
        }
        lock.lock()
        models[key] = m
        lock.unlock()
        return (m, entry)
    }

    public func load(_ point: OperatingPoint) throws {
        _ = try model(point)
    }

    public func run(_ point: OperatingPoint, input: [Float], shape: [Int]) throws -> [Float] {
        let (m, entry) = try model(point)
        let count = shape.reduce(1, *)
        guard count == input.count else {
            throw CoreMLEngineError("\(entry.name): input has \(input.count) values, shape \(shape) needs \(count)")
        }
        let array = try MLMultiArray(shape: shape.map { NSNumber(value: $0) }, dataType: .float32)
        array.withUnsafeMutableBufferPointer(ofType: Float.self) { buffer, strides in
            // A new MLMultiArray is C-contiguous; copy by strides anyway.
            var contiguous = true
            var expected = 1
            for d in stride(from: shape.count - 1, through: 0, by: -1) {
                if strides[d] != expected { contiguous = false }
                expected *= shape[d]
            }
            if contiguous {
                for i in 0..<count { buffer[i] = input[i] }
            } else {
                for linear in 0..<count {
                    var rest = linear
                    var offset = 0
                    for d in stride(from: shape.count - 1, through: 0, by: -1) {
                        offset += (rest % shape[d]) * strides[d]
                        rest /= shape[d]
                    }
                    buffer[offset] = input[linear]
                }
            }
        }
        let features = try MLDictionaryFeatureProvider(dictionary: [entry.inputName: MLFeatureValue(multiArray: array)])
        let output = try m.prediction(from: features)
        guard let result = output.featureValue(for: entry.outputName)?.multiArrayValue else {
            throw CoreMLEngineError("\(point.artifact): function \(entry.name) has no multi-array output \(entry.outputName)")
        }
        var logits = [Float](repeating: 0, count: result.count)
        if result.dataType == .float32 {
            result.withUnsafeBufferPointer(ofType: Float.self) { buffer in
                for i in 0..<min(result.count, buffer.count) { logits[i] = buffer[i] }
            }
        } else {
            for i in 0..<result.count { logits[i] = result[i].floatValue }
        }
        return logits
    }
}
#endif
