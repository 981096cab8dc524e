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

/// Waits for an async Core ML call from the engine's synchronous API. Call it from the app's inference queue (a
/// plain dispatch queue), never from a Swift concurrency task: blocking a task-pool thread could starve the call.
private func waitFor<T>(_ operation: @escaping @Sendable () async throws -> T) throws -> T {
    let outcome = Outcome<T>()
    let done = DispatchSemaphore(value: 0)
    Task.detached {
        do { outcome.result = .success(try await operation()) } catch { outcome.result = .failure(error) }
        done.signal()
    }
    done.wait()
    return try outcome.result!.get()
}

/// The result an async call hands back to the thread waiting for it (written once, before the semaphore signals).
private final class Outcome<T>: @unchecked Sendable {
    var result: Result<T, Error>? = nil
}

/// Runs the Core ML operating points of a verified bundle: one multifunction `.mlpackage` per artifact, compiled
/// once (`MLModel.compileModel(at:) async`, cached by the artifact's sha256 under Application Support, so later
/// launches skip it), and one `MLModel` per (function, compute unit), loaded with `MLModelConfiguration.functionName`
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
                temporary = try waitFor { try await MLModel.compileModel(at: source) }
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
        return try? waitFor { try await MLModelAsset(url: url).functionNames }
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
        // Core ML does not promise a contiguous layout: write through the strides the buffer comes with.
        try array.withUnsafeMutableBufferPointer(ofType: Float.self) { buffer, strides in
            try StridedLayout.scatter(input, into: buffer, shape: shape, strides: strides)
        }
        let features = try MLDictionaryFeatureProvider(dictionary: [entry.inputName: MLFeatureValue(multiArray: array)])
        let output = try m.prediction(from: features)
        guard let result = output.featureValue(for: entry.outputName)?.multiArrayValue else {
            throw CoreMLEngineError("\(point.artifact): function \(entry.name) has no multi-array output \(entry.outputName)")
        }
        // Outputs may be padded or transposed in storage: read them through their strides, in row-major order.
        let outShape = result.shape.map { $0.intValue }
        let outStrides = result.strides.map { $0.intValue }
        if result.dataType == .float32 {
            return try result.withUnsafeBufferPointer(ofType: Float.self) { buffer in
                try StridedLayout.gather(buffer, shape: outShape, strides: outStrides)
            }
        }
        // float16 / float64 / int32: the linear subscript takes a storage offset (Σ index × stride).
        return try StridedLayout.offsets(shape: outShape, strides: outStrides).map { result[$0].floatValue }
    }
}
#endif
