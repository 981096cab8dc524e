import Foundation

/// Short name for the static helpers of OperatingPointSelector.
private typealias Sel = OperatingPointSelector

/// Chooses an operating point per frame from a LUT, a device id and a `Policy`: a line-by-line mirror of the Kotlin
/// port (android_demo/selector), which follows the Python reference (resflex.mobile.selector; its module docstring
/// is the algorithm, steps 1–7 below). Not thread-safe: one per stream.
///
///     let selector = try OperatingPointSelector.fromBundle(bundleURL, device: "phone")
///     let d = selector.choose(DeviceState(battery: 0.42, thermal: 1, cpuLoad: 0.6))
///     selector.observe(d, measuredMs: 21.7)
///
/// (Named OperatingPointSelector, not Selector, which is Objective-C's method selector type on Apple platforms.)
public final class OperatingPointSelector {
    public static let cpu = 0
    public static let accelerator = 1
    public static let classNames = ["cpu", "accelerator"]
    /// Thermal scale → normalised level 0...3 per raw value.
    public static let thermalScales: [String: [Int]] = [
        "normalized": [0, 1, 2, 3],
        "android": [0, 1, 2, 3, 3, 3, 3],
        "ios": [0, 1, 2, 3]
    ]

    public let lut: Lut
    public let device: String
    public let policy: Policy
    /// "energy_mj" when every (available) point has a measured energy, else "macs" (a proxy).
    public private(set) var energyMetric: String = "macs"
    /// Per LUT point: "measured" | "model" | "macs".
    public let sources: [String]
    /// Indices into lut.operatingPoints of the Pareto-optimal points (CPU class first, then accelerators).
    public private(set) var candidates: [Int] = []
    /// Indices into lut.operatingPoints that are not available (see `setUnavailable`); empty unless set.
    public private(set) var unavailable: Set<Int> = []
    /// LUT points on a compute unit their artifact is not offered on (`computeUnits`): never candidates.
    public let notOffered: Set<Int>

    // Per LUT point, computed once (step 1).
    private let baseAll: [Double]
    private let mjAll: [Double?]
    private let keyRank: [Int]

    // Candidate arrays, parallel to `candidates`.
    private var n = 0
    private var cls: [Int] = []
    private var base: [Double] = []
    private var top1: [Double] = []
    private var energy: [Double] = []
    private var rank: [Int] = []

    private var slow: [Double] = [1.0, 1.0]
    private var current = -1  // candidate position
    private var calm = 0
    private var wanted = -1  // the step-up point (candidate position) the calm frames wanted
    private var misses = 0  // consecutive deadline misses of the current point (step 6)
    private var lastMs: Double? = nil
    private var requiredFrames: Int
    private var window = 0

    /// Switches made since construction or reset().
    public private(set) var switches = 0

    /// The learnt slowdown per class ("cpu", "accelerator").
    public var slowdown: [String: Double] {
        return ["cpu": slow[Sel.cpu], "accelerator": slow[Sel.accelerator]]
    }

    /// Read `bundle/lut.json` and the optional `bundle/selector_policy.json` (over the defaults, or over `base`).
    public static func fromBundle(_ bundle: URL, device: String, base: Policy = Policy()) throws -> OperatingPointSelector {
        let policyURL = bundle.appendingPathComponent(Policy.file)
        var policy = base
        if Document.exists(policyURL.path) {
            let data = try Document.read(policyURL.path, name: policyURL.path)
            policy = try Policy.parse(data, base: base, source: policyURL.path)
        }
        let lut = try Lut.read(bundle.appendingPathComponent("lut.json"))
        return try OperatingPointSelector(lut: lut, device: device, policy: policy)
    }

    /// `computeUnits`: artifact file → the compute units manifest.json offers it on (`ArtifactInfo.compute_units`);
    /// a point of such an artifact on another unit is dropped (step 1: never a candidate, dominates nothing).
    public init(lut: Lut, device: String, policy: Policy = Policy(), computeUnits: [String: [String]]? = nil) throws {
        try policy.validate()
        let points = lut.operatingPoints
        if points.isEmpty { throw SchemaError("lut: no operating points to choose from") }
        var dropped = Set<Int>()
        for i in 0..<points.count {
            if let units = computeUnits?[points[i].artifact], !units.contains(points[i].computeUnit) { dropped.insert(i) }
        }
        if dropped.count == points.count {
            throw SchemaError("lut: no operating point is on a compute unit its artifact is offered on (compute_units)")
        }
        self.notOffered = dropped
        self.lut = lut
        self.device = device
        self.policy = policy
        self.requiredFrames = policy.hysteresisFrames
        let count = points.count
        // Step 1: base latency and source, class, top-1, energy, key rank.
        var baseList: [Double] = []
        var sourceList: [String] = []
        var mjList: [Double?] = []
        for op in points {
            let b = Sel.baseLatency(op, device: device, lut: lut, policy: policy)
            baseList.append(b.ms)
            sourceList.append(b.source)
            mjList.append(b.energyMj)
        }
        sources = sourceList
        baseAll = baseList
        mjAll = mjList
        var order: [Int] = []  // stable insertion sort by OperatingPoint key
        for i in 0..<count {
            var at = order.count
            while at > 0 && Sel.keyLess(points[i], points[order[at - 1]]) { at -= 1 }
            order.insert(i, at: at)
        }
        var ranks = [Int](repeating: 0, count: count)
        for r in 0..<count { ranks[order[r]] = r }
        keyRank = ranks
        rebuild()
    }

    /// Make some operating points unavailable (e.g. an entry that failed to load for its compute unit, or points
    /// outside a pinned resolution): the candidates become those of a selector built on the LUT without them
    /// (energy metric and Pareto filter over the remaining points; key ranks keep their order). Not in the Python
    /// reference; with no point unavailable (the default) nothing changes. The learnt slowdowns and the back-off
    /// state are kept; if the current point goes, the next `choose` starts afresh ("initial"). Throws, changing
    /// nothing, when no point would remain.
    public func setUnavailable(_ indices: Set<Int>) throws {
        let count = lut.operatingPoints.count
        if (0..<count).allSatisfy({ indices.contains($0) || notOffered.contains($0) }) {
            throw SchemaError("lut: no operating point left to choose from (all \(count) are unavailable)")
        }
        let currentIndex = current >= 0 ? candidates[current] : -1
        unavailable = Set(indices.filter { $0 >= 0 && $0 < count })
        rebuild()
        wanted = -1  // candidate positions changed: calm frames count afresh for the next step-up point
        current = -1
        if currentIndex >= 0, let position = candidates.firstIndex(of: currentIndex) {
            current = position
        } else if currentIndex >= 0 {
            calm = 0
            misses = 0
            lastMs = nil
        }
    }

    /// Step 1 from the per-point values: class, top-1, energy, then the Pareto filter within each class.
    private func rebuild() {
        let points = lut.operatingPoints
        let count = points.count
        let available = (0..<count).filter { !unavailable.contains($0) && !notOffered.contains($0) }
        var allMj = true
        for i in available where mjAll[i] == nil { allMj = false }
        energyMetric = allMj ? "energy_mj" : "macs"
        var clsAll = [Int](repeating: 0, count: count)
        var top1All = [Double](repeating: 0.0, count: count)
        var energyAll = [Double](repeating: 0.0, count: count)
        for i in available {
            let op = points[i]
            var accelerator = false
            for u in policy.acceleratorUnits where Sel.same(u, op.computeUnit) { accelerator = true }
            clsAll[i] = accelerator ? Sel.accelerator : Sel.cpu
            if let t = op.top1, Sel.finite(t) { top1All[i] = t }
            if allMj, let mj = mjAll[i] { energyAll[i] = mj } else { energyAll[i] = Double(max(op.macs, 1)) }
        }
        // Pareto filter within each class.
        var keep: [Int] = []
        for k in 0...1 {
            for p in available where clsAll[p] == k {
                var dominated = false
                for q in available where q != p && clsAll[q] == clsAll[p] {
                    if top1All[q] >= top1All[p] && baseAll[q] <= baseAll[p] &&
                        (!allMj || energyAll[q] <= energyAll[p]) &&
                        (top1All[q] > top1All[p] || baseAll[q] < baseAll[p] || (allMj && energyAll[q] < energyAll[p])) {
                        dominated = true
                        break
                    }
                }
                if !dominated { keep.append(p) }
            }
        }
        candidates = keep
        n = keep.count
        cls = keep.map { clsAll[$0] }
        base = keep.map { baseAll[$0] }
        top1 = keep.map { top1All[$0] }
        energy = keep.map { energyAll[$0] }
        rank = keep.map { keyRank[$0] }
    }

    private struct Base {
        let ms: Double
        let source: String
        let energyMj: Double?
    }

    /// Step 1: measured latency, else the device's latency model, else MACs at fallback_gmacs_per_s.
    private static func baseLatency(_ op: OperatingPoint, device: String, lut: Lut, policy p: Policy) -> Base {
        var best: LatencyEntry? = nil
        for e in op.latency[device] ?? [] {
            if let r = p.runtime, !Sel.same(e.runtime, r) { continue }
            if let t = p.threads, e.threads != t { continue }
            if !Sel.finite(e.p50Ms) || e.p50Ms <= 0 { continue }
            if let b = best {
                if e.p50Ms < b.p50Ms || (e.p50Ms == b.p50Ms && (e.threads < b.threads ||
                        (e.threads == b.threads && Sel.codePointLess(e.runtime, b.runtime)))) {
                    best = e
                }
            } else {
                best = e
            }
        }
        if let chosen = best {
            var mj: Double? = nil
            if let m = chosen.energyMj, Sel.finite(m), m >= 0 { mj = m }
            return Base(ms: chosen.p50Ms, source: "measured", energyMj: mj)
        }
        var bestMs = 0.0
        var bestThreads = 0
        var bestRuntime = ""
        var found = false
        for m in lut.latencyModels[device] ?? [] {
            if !Sel.same(m.precision, op.precision) || !Sel.same(m.computeUnit, op.computeUnit) { continue }
            if let r = p.runtime, !Sel.same(m.runtime, r) { continue }
            if let t = p.threads, m.threads != t { continue }
            let ms = m.interceptMs + m.msPerGmac * (Double(op.macs) / 1e9)
            if Sel.finite(ms) && ms > 0 && (!found || ms < bestMs || (ms == bestMs && (m.threads < bestThreads ||
                    (m.threads == bestThreads && Sel.codePointLess(m.runtime, bestRuntime))))) {
                bestMs = ms
                bestThreads = m.threads
                bestRuntime = m.runtime
                found = true
            }
        }
        if found { return Base(ms: bestMs, source: "model", energyMj: nil) }
        return Base(ms: Double(max(op.macs, 1)) / (p.fallbackGmacsPerS * 1e6), source: "macs", energyMj: nil)
    }

    /// Forget the current point, the feedback and the hysteresis counters.
    public func reset() {
        slow = [1.0, 1.0]
        current = -1
        calm = 0
        wanted = -1
        misses = 0
        lastMs = nil
        requiredFrames = policy.hysteresisFrames
        window = 0
        switches = 0
    }

    // ------------------------------------------------------------------ step 2: sensors

    private struct Clean {
        let level: Int
        let battery: Double
        let charging: Bool
        let powerSave: Bool
        let load: Double
        let bad: [String]
    }

    private func sanitize(_ s: DeviceState) -> Clean {
        let p = policy
        var bad: [String] = []
        var scale: [Int]? = nil
        if let name = s.thermalScale as? String { scale = Sel.thermalScales[name] }
        let t = Sel.number(s.thermal)
        let level: Int
        if let scale = scale {
            if let t = t, Sel.finite(t), t >= 0, t == t.rounded(.down), t < Double(scale.count) {
                level = scale[Int(t)]
            } else {
                bad.append("bad_sensor:thermal")
                if let t = t, t > Double(scale.count - 1) { level = 3 } else { level = p.unknownThermal }
            }
        } else {
            bad.append("bad_sensor:thermal_scale")
            level = p.unknownThermal
        }
        let battery: Double
        if let b = Sel.number(s.battery), Sel.finite(b), 0 <= b, b <= 1 {
            battery = b
        } else {
            bad.append("bad_sensor:battery")
            battery = p.batteryLow
        }
        let charging: Bool
        if let c = Sel.boolean(s.charging) {
            charging = c
        } else {
            bad.append("bad_sensor:charging")
            charging = false
        }
        let powerSave: Bool
        if let ps = Sel.boolean(s.powerSave) {
            powerSave = ps
        } else {
            bad.append("bad_sensor:power_save")
            powerSave = true
        }
        let load: Double
        if let l = Sel.number(s.cpuLoad), Sel.finite(l), 0 <= l, l <= 1 {
            load = l
        } else {
            bad.append("bad_sensor:cpu_load")
            load = 1.0
        }
        return Clean(level: level, battery: battery, charging: charging, powerSave: powerSave, load: load, bad: bad)
    }

    // ------------------------------------------------------------------ step 4: picking

    /// pick(candidates with predicted ≤ limit, predicted < below and top1 ≥ min_top1), or -1.
    private func pick(_ pred: [Double], _ slack: Double, _ limit: Double, _ below: Double) -> Int {
        let minTop1 = policy.minTop1
        var best = -1
        if slack <= 0 {
            for c in 0..<n where pred[c] <= limit && pred[c] < below && top1[c] >= minTop1 {
                if best < 0 || Sel.before(-top1[c], pred[c], energy[c], rank[c],
                                          -top1[best], pred[best], energy[best], rank[best]) {
                    best = c
                }
            }
            return best
        }
        var bestTop1 = 0.0
        var found = false
        for c in 0..<n where pred[c] <= limit && pred[c] < below && top1[c] >= minTop1 && (!found || top1[c] > bestTop1) {
            bestTop1 = top1[c]
            found = true
        }
        if !found { return -1 }
        let floorTop1 = bestTop1 - slack
        for c in 0..<n where pred[c] <= limit && pred[c] < below && top1[c] >= minTop1 && top1[c] >= floorTop1 {
            if best < 0 || Sel.before(energy[c], -top1[c], pred[c], rank[c],
                                      energy[best], -top1[best], pred[best], rank[best]) {
                best = c
            }
        }
        return best
    }

    /// pick({a, b}) (both fit).
    private func prefer(_ a: Int, _ b: Int, _ pred: [Double], _ slack: Double) -> Int {
        if slack <= 0 || Sel.pyMin(top1[a], top1[b]) < Sel.pyMax(top1[a], top1[b]) - slack {
            return Sel.before(-top1[a], pred[a], energy[a], rank[a], -top1[b], pred[b], energy[b], rank[b]) ? a : b
        }
        return Sel.before(energy[a], -top1[a], pred[a], rank[a], energy[b], -top1[b], pred[b], rank[b]) ? a : b
    }

    /// Lowest predicted; ties: highest top1, lowest energy, lowest key rank.
    private func fastest(_ pred: [Double]) -> Int {
        var best = -1
        for c in 0..<n {
            if best < 0 || Sel.before(pred[c], -top1[c], energy[c], rank[c],
                                      pred[best], -top1[best], energy[best], rank[best]) {
                best = c
            }
        }
        return best
    }

    // ------------------------------------------------------------------ steps 3, 5, 7: choosing

    /// The operating point for the next frame. Never throws, whatever the sensor values.
    public func choose(_ state: DeviceState) -> Decision {
        let p = policy
        let s = sanitize(state)
        let level = s.level
        // Step 3: effective budget, energy slack, model factors and predictions.
        var budget = p.latencyBudgetMs * p.thermalBudget[level]
        var batteryCode: String? = nil
        var slack = 0.0
        if !s.charging && s.battery <= p.batteryCritical {
            budget = budget * p.batteryCriticalBudget
            slack = p.energySlackCritical
            batteryCode = "battery_critical"
        } else if !s.charging && s.battery <= p.batteryLow {
            budget = budget * p.batteryLowBudget
            slack = p.energySlackLow
            batteryCode = "battery_low"
        }
        if s.powerSave {
            budget = budget * p.powerSaveBudget
            slack = Sel.pyMax(slack, p.energySlackPowerSave)
        }
        let modelFactor = [p.thermalCpuFactor[level] / (1.0 - s.load * p.cpuLoadK), 1.0]
        let fc = modelFactor[Sel.cpu] * slow[Sel.cpu]
        let fa = slow[Sel.accelerator]
        var pred = [Double](repeating: 0.0, count: n)
        for c in 0..<n { pred[c] = base[c] * (cls[c] == Sel.cpu ? fc : fa) }
        let minTop1 = p.minTop1
        let cur = current

        // Step 5: hysteresis.
        var chosen: Int
        var action: String
        if cur < 0 || !(pred[cur] <= budget && top1[cur] >= minTop1) {
            action = cur < 0 ? "initial" : "step_down_no_fit"
            chosen = pick(pred, slack, budget, Double.infinity)
            if chosen < 0 {
                chosen = fastest(pred)
                action = "none_fit_fallback_fastest"
                if cur >= 0 && !(pred[chosen] < pred[cur] * (1.0 - p.hysteresisMargin)) {
                    chosen = cur
                    action = "none_fit_hold"
                }
            }
            calm = 0
        } else if misses >= p.missFrames {
            chosen = pick(pred, slack, budget, pred[cur] * (1.0 - p.hysteresisMargin))
            action = "deadline_miss_step_down"
            if chosen < 0 {
                chosen = cur
                action = "deadline_miss_hold"
            }
            calm = 0
            misses = 0
        } else {
            let marginLimit = budget * (1.0 - p.hysteresisMargin)
            let up = pick(pred, slack, marginLimit, Double.infinity)
            chosen = cur
            action = "hold"
            if up >= 0 && up != cur && prefer(up, cur, pred, slack) == up {
                let frameMs = lastMs ?? pred[cur]
                calm = frameMs > marginLimit ? 0 : (up == wanted ? calm + 1 : 1)
                wanted = up
                if calm >= requiredFrames {
                    chosen = up
                    action = "step_up"
                } else {
                    action = "hold_hysteresis"
                }
            } else {
                calm = 0
            }
        }
        if chosen != cur {
            if cur >= 0 { switches += 1 }
            calm = 0
            misses = 0
        }
        current = chosen
        lastMs = nil
        if window > 0 {
            if action == "step_down_no_fit" || action == "none_fit_fallback_fastest" ||
                action == "deadline_miss_step_down" || action == "step_up" {
                requiredFrames = min(requiredFrames * 2, p.backoffMaxFrames)
                window = 0
            } else {
                window -= 1
                if window == 0 { requiredFrames = max(requiredFrames / 2, p.hysteresisFrames) }
            }
        }
        if action == "step_up" { window = p.probeWindowFrames }

        // Step 7: reason codes.
        let k = cls[chosen]
        var reason = [action]
        if pred[chosen] <= budget && top1[chosen] >= minTop1 {
            reason.append("fits_budget")
        } else {
            if pred[chosen] > budget { reason.append("over_budget") }
            if top1[chosen] < minTop1 { reason.append("below_min_top1") }
        }
        if p.thermalBudget[level] < 1 { reason.append("thermal_tightened") }
        if p.thermalCpuFactor[level] > 1 { reason.append("thermal_cpu_slowdown") }
        if s.load * p.cpuLoadK > 0 { reason.append("cpu_load_slowdown") }
        if let code = batteryCode { reason.append(code) }
        if s.charging { reason.append("charging") }
        if s.powerSave { reason.append("power_save") }
        if slack > 0 { reason.append("energy_preferred") }
        if Sel.pyMax(slow[Sel.cpu], slow[Sel.accelerator]) >= p.throttleReport {
            reason.append("throttle_detected")
        }
        if k == Sel.accelerator { reason.append("accelerator") }
        let index = candidates[chosen]
        let source = sources[index]
        if source == "model" {
            reason.append("estimated_latency")
        } else if source == "macs" {
            reason.append("estimated_latency_macs")
        }
        reason.append(contentsOf: s.bad)
        return Decision(index: index, point: lut.operatingPoints[index], predictedMs: pred[chosen],
                        modelMs: base[chosen] * modelFactor[k], budgetMs: budget, unitClass: Sel.classNames[k],
                        latencySource: source, reason: reason)
    }

    // ------------------------------------------------------------------ step 6: feedback

    /// Feed back the measured latency of a decision; false if the measurement was ignored (not a finite number > 0).
    @discardableResult
    public func observe(_ decision: Decision, measuredMs: Any?) -> Bool {
        guard let measured = Sel.number(measuredMs), Sel.finite(measured), measured > 0 else { return false }
        let p = policy
        let k = decision.unitClass == Sel.classNames[Sel.accelerator] ? Sel.accelerator : Sel.cpu
        let missed = measured > decision.budgetMs
        let ratio = Sel.pyMin(Sel.pyMax(measured / decision.modelMs, p.slowdownMin), p.slowdownMax)
        slow[k] = (1.0 - p.emaAlpha) * slow[k] + p.emaAlpha * ratio
        slow[1 - k] = (1.0 - p.slowdownRelax) * slow[1 - k] + p.slowdownRelax * 1.0
        if current >= 0 && candidates[current] == decision.index {
            lastMs = measured
            if !missed {
                misses = 0
            } else if decision.modelMs > decision.budgetMs * (1.0 - p.hysteresisMargin) {
                misses = max(misses + 1, p.missFrames)  // the sensors explain the miss: step down at once
            } else {
                misses += 1  // a point predicted to fit with margin: noise until missFrames in a row
            }
        }
        return true
    }

    // ------------------------------------------------------------------ helpers (Python semantics)

    /// A Double for Swift's numeric types (never for a Bool), else nil.
    static func number(_ x: Any?) -> Double? {
        guard let x = x else { return nil }
        if type(of: x) == Bool.self { return nil }
        switch x {
        case let v as Double: return v
        case let v as Float: return Double(v)
        case let v as Int: return Double(v)
        case let v as Int64: return Double(v)
        case let v as Int32: return Double(v)
        case let v as UInt: return Double(v)
        default: return nil
        }
    }

    /// A Bool only for a real Bool (not for a number).
    static func boolean(_ x: Any?) -> Bool? {
        guard let x = x, type(of: x) == Bool.self else { return nil }
        return x as? Bool
    }

    static func finite(_ x: Double) -> Bool {
        return x.isFinite
    }

    /// Python's max(a, b) / min(a, b): the first argument unless the second is strictly greater / smaller.
    static func pyMax(_ a: Double, _ b: Double) -> Double {
        return b > a ? b : a
    }

    static func pyMin(_ a: Double, _ b: Double) -> Double {
        return b < a ? b : a
    }

    /// Python's tuple comparison (a0, a1, a2, a3) < (b0, b1, b2, b3) with an integer last element.
    static func before(_ a0: Double, _ a1: Double, _ a2: Double, _ a3: Int,
                       _ b0: Double, _ b1: Double, _ b2: Double, _ b3: Int) -> Bool {
        if a0 != b0 { return a0 < b0 }
        if a1 != b1 { return a1 < b1 }
        if a2 != b2 { return a2 < b2 }
        return a3 < b3
    }

    /// Strings compared by Unicode code point, as Python does (Swift's `<` and `==` use canonical equivalence).
    static func codePointLess(_ a: String, _ b: String) -> Bool {
        return a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars)
    }

    static func same(_ a: String, _ b: String) -> Bool {
        return a.unicodeScalars.elementsEqual(b.unicodeScalars)
    }

    /// OperatingPoint.key() order: (resolution, backend, precision, compute_unit, stage_scales), lexicographic.
    static func keyLess(_ a: OperatingPoint, _ b: OperatingPoint) -> Bool {
        if a.resolution != b.resolution { return a.resolution < b.resolution }
        if !same(a.backend, b.backend) { return codePointLess(a.backend, b.backend) }
        if !same(a.precision, b.precision) { return codePointLess(a.precision, b.precision) }
        if !same(a.computeUnit, b.computeUnit) { return codePointLess(a.computeUnit, b.computeUnit) }
        let sa = a.stageScales ?? []
        let sb = b.stageScales ?? []
        var i = 0
        while i < sa.count && i < sb.count {
            if sa[i] != sb[i] { return sa[i] < sb[i] }
            i += 1
        }
        return sa.count < sb.count
    }
}
