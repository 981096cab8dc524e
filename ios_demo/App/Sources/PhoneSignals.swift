#if os(iOS)
import Foundation
import ResflexCore
import ResflexSelector
import UIKit

/// The phone's state for the selector: thermal state, Low Power Mode, battery. Thin wiring only; the selector
/// handles odd values (batteryLevel −1 while monitoring is off → "bad_sensor:battery", treated as low; an unknown
/// thermal raw value → policy.unknown_thermal).
final class PhoneSignals: Signals {
    private let lock = NSLock()
    private var thermal: Int
    private var lowPower: Bool
    private var battery: Float
    private var charging: Bool
    private var observers: [NSObjectProtocol] = []
    /// Called on the main actor after any change.
    var onChange: (@MainActor () -> Void)?

    /// On the main actor (UIDevice).
    @MainActor
    init() {
        let info = ProcessInfo.processInfo
        let device = UIDevice.current
        device.isBatteryMonitoringEnabled = true
        // Read the current values first, then register: the notifications only say "changed".
        thermal = info.thermalState.rawValue
        lowPower = info.isLowPowerModeEnabled
        battery = device.batteryLevel  // −1 when unknown (monitoring off, Simulator)
        charging = device.batteryState == .charging || device.batteryState == .full
        let center = NotificationCenter.default
        let names: [Notification.Name] = [ProcessInfo.thermalStateDidChangeNotification,
                                          .NSProcessInfoPowerStateDidChange,
                                          UIDevice.batteryLevelDidChangeNotification,
                                          UIDevice.batteryStateDidChangeNotification]
        for name in names {
            observers.append(center.addObserver(forName: name, object: nil, queue: .main) { [weak self] _ in
                MainActor.assumeIsolated { self?.refresh() }  // delivered on the main queue
            })
        }
        refresh()  // a change between the first read and the registration is not lost
    }

    deinit {
        for o in observers { NotificationCenter.default.removeObserver(o) }
    }

    @MainActor
    private func refresh() {
        let info = ProcessInfo.processInfo
        let device = UIDevice.current
        lock.lock()
        thermal = info.thermalState.rawValue
        lowPower = info.isLowPowerModeEnabled
        battery = device.batteryLevel
        charging = device.batteryState == .charging || device.batteryState == .full
        lock.unlock()
        onChange?()
    }

    func state() -> DeviceState {
        lock.lock()
        defer { lock.unlock() }
        // cpuLoad: iOS does not tell an app how busy the CPU is with other work; 0 (the selector still learns a
        // slowdown from measured latencies).
        return DeviceState(battery: Double(battery), charging: charging, powerSave: lowPower, thermal: thermal,
                           cpuLoad: 0.0, thermalScale: "ios")
    }

    var thermalText: String {
        lock.lock()
        defer { lock.unlock() }
        return ["nominal", "fair", "serious", "critical"].indices.contains(thermal)
            ? ["nominal", "fair", "serious", "critical"][thermal] : "unknown (\(thermal))"
    }

    var batteryText: String {
        lock.lock()
        defer { lock.unlock() }
        let level = battery < 0 ? "battery unknown" : "battery \(Int((battery * 100).rounded()))%"
        return level + (charging ? ", charging" : "") + (lowPower ? ", Low Power Mode" : "")
    }
}
#endif
