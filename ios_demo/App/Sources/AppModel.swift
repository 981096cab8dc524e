#if os(iOS)
import Foundation
import ResflexCore
import ResflexCoreML
import ResflexSelector
import SwiftUI
import UIKit

/// The screen's state. The work happens in `Pipeline`, on its own serial queue; results come back on the main actor.
@MainActor
final class AppModel: ObservableObject {
    @Published var top: [ClassScore] = []
    @Published var pointText = "—"
    @Published var latencyMs: Double = 0
    @Published var budgetMs: Double = 0
    @Published var reasons: [String] = []
    @Published var thermalText = ""
    @Published var batteryText = ""
    @Published var resolutions: [Int] = []
    @Published var pinned: Int? = nil
    @Published var status = "Loading bundle…"
    @Published var unavailable: [String] = []
    @Published var benchmarking = false
    @Published var benchmarkProgress = ""
    @Published var profileURL: URL? = nil

    let camera = CameraController()
    private var signals: PhoneSignals?
    private var pipeline: Pipeline?

    func start() {
        guard pipeline == nil else { return }
        let signals = PhoneSignals()
        self.signals = signals
        signals.onChange = { [weak self] in self?.refreshSignals() }
        refreshSignals()
        let pipeline = Pipeline(signals: signals, model: self)
        self.pipeline = pipeline
        camera.onFrame = { frame, rotation in pipeline.submit(frame, rotation) }
        pipeline.open()
        camera.start()
    }

    private func refreshSignals() {
        thermalText = signals?.thermalText ?? ""
        batteryText = signals?.batteryText ?? ""
    }

    func pin(_ resolution: Int?) {
        pipeline?.pin(resolution)
    }

    func benchmark() {
        guard let pipeline = pipeline, !benchmarking else { return }
        benchmarking = true
        profileURL = nil
        pipeline.benchmark()
    }

    // Called by the pipeline (on the main actor).
    func show(_ r: FrameResult) {
        top = r.top
        let p = r.point
        pointText = "\(p.resolution) px · \(p.backend) \(p.precision) · \(p.computeUnit)"
        latencyMs = r.latencyMs
        budgetMs = r.budgetMs
        reasons = r.reasons
        refreshSignals()
    }
}

/// Bundle → Core ML engine → frame loop, on one serial queue. Frames arriving while one is processed are dropped.
final class Pipeline: @unchecked Sendable {
    private let queue = DispatchQueue(label: "resflex.inference", qos: .userInitiated)
    private let signals: PhoneSignals
    private weak var model: AppModel?
    // Touched on `queue` only.
    private var loop: FrameLoop?
    private var bundle: ResflexBundle?
    private var engine: CoreMLEngine?
    private var busy = false
    private var paused = false
    private var lastFrame: (PixelFrame, Int)?

    init(signals: PhoneSignals, model: AppModel) {
        self.signals = signals
        self.model = model
    }

    /// The LUT key of this phone, e.g. "ios-iphone16-1": the device id the benchmark is stored under by
    /// `resflex profile --import`, so the selector uses this phone's own measurements once the bundle has them.
    static var deviceId: String {
        return DeviceProfile.deviceId(platform: "ios", model: machine)
    }

    static var machine: String {
        var info = utsname()
        uname(&info)
        return withUnsafeBytes(of: &info.machine) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    private func ui(_ update: @escaping @MainActor (AppModel) -> Void) {
        guard let model = model else { return }
        Task { @MainActor in update(model) }
    }

    func open() {
        queue.async { [self] in
            do {
                guard let url = Bundle.main.url(forResource: "bundle", withExtension: nil) else {
                    throw BundleError("the app has no bundle folder: copy one to App/Resources/bundle (see README)")
                }
                let bundle = try BundleReader.open(url, backends: ["coreml"])  // verifies the Core ML sha256s
                let engine = try CoreMLEngine(bundle: bundle)
                let selector = try bundle.selector(device: Pipeline.deviceId)
                let loop = try FrameLoop(selector: selector, engine: engine, signals: signals,
                                         classNames: bundle.manifest.model.classNames)
                ui { $0.status = "Compiling and loading the Core ML functions…" }
                try loop.prepare()  // one MLModel per function × compute unit; failures leave the candidates
                let failed = loop.unavailable.filter { $0.point.backend == "coreml" }
                    .map { "\($0.point.entry) @ \($0.point.computeUnit): \($0.error)" }
                let resolutions = Array(Set(bundle.lut.operatingPoints.filter { $0.backend == "coreml" }
                    .map { $0.resolution })).sorted()
                self.bundle = bundle
                self.engine = engine
                self.loop = loop
                ui { m in
                    m.unavailable = failed
                    m.resolutions = resolutions
                    m.status = ""
                }
            } catch {
                ui { $0.status = "\(error)" }
            }
        }
    }

    func submit(_ frame: PixelFrame, _ rotation: Int) {
        queue.async { [self] in
            lastFrame = (frame, rotation)
            guard !busy, !paused, let loop = loop, let bundle = bundle else { return }
            busy = true
            defer { busy = false }
            do {
                let result = try loop.step { point in
                    try Pipeline.input(point, bundle: bundle, frame: frame, rotation: rotation)
                }
                ui { $0.show(result) }
            } catch {
                ui { $0.status = "\(error)" }
            }
        }
    }

    /// The chosen point's input: the frame preprocessed exactly as manifest.json's InputSpec says.
    static func input(_ point: OperatingPoint, bundle: ResflexBundle, frame: PixelFrame?,
                      rotation: Int) throws -> (values: [Float], shape: [Int]) {
        guard let spec = bundle.manifest.input(resolution: point.resolution),
              let artifact = bundle.artifact(for: point) else {
            throw FrameLoopError("manifest.json has no input spec or artifact for \(point.entry)")
        }
        let shape = Preprocess.shape(spec, layout: artifact.layout)
        guard let frame = frame else { return ([Float](repeating: 0, count: shape.reduce(1, *)), shape) }
        return (try Preprocess.tensor(frame, rotation: rotation, spec: spec, layout: artifact.layout), shape)
    }

    func pin(_ resolution: Int?) {
        queue.async { [self] in
            do {
                try loop?.pin(resolution: resolution)
                ui { $0.pinned = resolution }
            } catch {
                ui { $0.status = "\(error)" }
            }
        }
    }

    /// "Benchmark this phone": every Core ML point (function × compute unit), 5 warm-up + 30 timed runs on the
    /// last camera frame, written to device_profile.json for `resflex profile BUNDLE --import`.
    func benchmark() {
        queue.async { [self] in
            paused = true
            defer { paused = false }
            guard let bundle = bundle, let engine = engine else {
                ui { $0.benchmarking = false }
                return
            }
            let frame = lastFrame
            let runner = BenchmarkRunner(engine: engine, runs: 30, warmup: 5)
            let os = ProcessInfo.processInfo.operatingSystemVersion
            let osText = "iOS \(os.majorVersion).\(os.minorVersion).\(os.patchVersion)"
            let app = Bundle.main.infoDictionary?["CFBundleShortVersionString"] as? String ?? "?"
            do {
                let profile = try runner.run(
                    lut: bundle.lut, deviceId: Pipeline.deviceId,
                    facts: ["platform": "ios", "model": Pipeline.machine, "os": osText, "coreml": osText,
                            "app": "resflex-demo \(app)"],
                    checkpointSha256: bundle.manifest.model.checkpointSha256,
                    input: { point in try Pipeline.input(point, bundle: bundle, frame: frame?.0, rotation: frame?.1 ?? 0) },
                    progress: { [self] n, total, point in
                        ui { $0.benchmarkProgress = "\(n + 1)/\(total): \(point.entry) @ \(point.computeUnit)" }
                    })
                let url = FileManager.default.temporaryDirectory.appendingPathComponent(DeviceProfile.file)
                try profile.write(to: url)
                ui { m in
                    m.profileURL = url
                    m.benchmarking = false
                    m.benchmarkProgress = "\(profile.measurements.count) measured, \(profile.failures.count) failed"
                }
            } catch {
                ui { m in
                    m.status = "\(error)"
                    m.benchmarking = false
                }
            }
        }
    }
}
#endif
