import Foundation

/// What the phone's sensors say now. Values are not validated here (hence `Any?`): `Selector.choose` sanitises
/// them and never throws on them. Numbers are Swift's Int, Double, Float and the other integer types; a Bool is
/// never a number.
///
/// battery: fraction 0...1; charging, powerSave: Bool; thermal: a level on `thermalScale`; cpuLoad: fraction
/// 0...1 of the CPU busy with other work; thermalScale: "normalized" (0–3), "android" (0–6) or "ios"
/// (ProcessInfo.ThermalState.rawValue, 0–3).
public struct DeviceState {
    public var battery: Any?
    public var charging: Any?
    public var powerSave: Any?
    public var thermal: Any?
    public var cpuLoad: Any?
    public var thermalScale: Any?

    public init(battery: Any? = 1.0, charging: Any? = false, powerSave: Any? = false, thermal: Any? = 0,
                cpuLoad: Any? = 0.0, thermalScale: Any? = "normalized") {
        self.battery = battery
        self.charging = charging
        self.powerSave = powerSave
        self.thermal = thermal
        self.cpuLoad = cpuLoad
        self.thermalScale = thermalScale
    }
}

/// One choice: the operating point, why, and what it was expected to cost.
public struct Decision {
    /// Position in lut.operatingPoints.
    public let index: Int
    public let point: OperatingPoint
    /// Includes the feedback slowdown.
    public let predictedMs: Double
    /// The same without the slowdown (what `observe` divides by).
    public let modelMs: Double
    /// Effective budget after thermal / battery / power-save tightening.
    public let budgetMs: Double
    /// "cpu" | "accelerator"
    public let unitClass: String
    /// "measured" | "model" | "macs"
    public let latencySource: String
    public let reason: [String]
}
