#if os(iOS)
import ResflexCore
import SwiftUI

/// One screen: camera preview, top-3, the chosen operating point, latency vs budget, thermal / battery state,
/// reason codes, a pin-a-resolution control and "Benchmark this phone".
struct ContentView: View {
    @ObservedObject var model: AppModel

    var body: some View {
        ZStack(alignment: .bottom) {
            CameraPreview(session: model.camera.session).ignoresSafeArea()
            VStack(alignment: .leading, spacing: 6) {
                if !model.status.isEmpty {
                    Text(model.status).font(.footnote).foregroundStyle(Color.yellow)
                }
                ForEach(Array(model.top.enumerated()), id: \.offset) { _, label in
                    HStack {
                        Text(label.name).bold()
                        Spacer()
                        Text(String(format: "%.1f %%", label.probability * 100)).monospacedDigit()
                    }
                }
                Divider()
                Text(model.pointText).font(.callout)
                Text(String(format: "%.1f ms / budget %.1f ms", model.latencyMs, model.budgetMs))
                    .monospacedDigit()
                    .foregroundStyle(model.latencyMs > model.budgetMs ? Color.red : Color.green)
                Text("\(model.thermalText) · \(model.batteryText)").font(.caption)
                Text(model.reasons.joined(separator: " ")).font(.caption2).foregroundStyle(.secondary)
                if !model.unavailable.isEmpty {
                    Text("Unavailable: " + model.unavailable.joined(separator: "; "))
                        .font(.caption2).foregroundStyle(Color.orange).lineLimit(3)
                }
                Picker("Resolution", selection: Binding(get: { model.pinned ?? 0 },
                                                        set: { model.pin($0 == 0 ? nil : $0) })) {
                    Text("Auto").tag(0)
                    ForEach(model.resolutions, id: \.self) { r in Text("\(r)").tag(r) }
                }
                .pickerStyle(.segmented)
                HStack {
                    Button(model.benchmarking ? "Benchmarking…" : "Benchmark this phone") { model.benchmark() }
                        .disabled(model.benchmarking)
                    if let url = model.profileURL {
                        ShareLink(item: url) { Label("device_profile.json", systemImage: "square.and.arrow.up") }
                    }
                }
                if !model.benchmarkProgress.isEmpty {
                    Text(model.benchmarkProgress).font(.caption2)
                }
            }
            .padding()
            .background(.ultraThinMaterial, in: RoundedRectangle(cornerRadius: 12))
            .padding()
        }
    }
}
#endif
