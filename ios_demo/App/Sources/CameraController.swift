#if os(iOS)
import AVFoundation
import ResflexCore

/// The back camera as 32BGRA frames (720p), delivered on a background queue; late frames are dropped.
final class CameraController: NSObject, AVCaptureVideoDataOutputSampleBufferDelegate {
    let session = AVCaptureSession()
    private let queue = DispatchQueue(label: "resflex.camera")
    /// Called on the camera queue with each frame and the clockwise rotation that makes it upright.
    var onFrame: (@Sendable (PixelFrame, Int) -> Void)?

    func start() {
        AVCaptureDevice.requestAccess(for: .video) { granted in
            guard granted else { return }
            self.queue.async { self.configure() }
        }
    }

    func stop() {
        queue.async { self.session.stopRunning() }
    }

    private func configure() {
        guard session.inputs.isEmpty else {
            session.startRunning()
            return
        }
        session.beginConfiguration()
        session.sessionPreset = .hd1280x720
        guard let camera = AVCaptureDevice.default(.builtInWideAngleCamera, for: .video, position: .back),
              let input = try? AVCaptureDeviceInput(device: camera), session.canAddInput(input) else {
            session.commitConfiguration()
            return
        }
        session.addInput(input)
        let output = AVCaptureVideoDataOutput()
        output.videoSettings = [kCVPixelBufferPixelFormatTypeKey as String: kCVPixelFormatType_32BGRA]
        output.alwaysDiscardsLateVideoFrames = true
        output.setSampleBufferDelegate(self, queue: queue)
        if session.canAddOutput(output) { session.addOutput(output) }
        session.commitConfiguration()
        session.startRunning()
    }

    func captureOutput(_ output: AVCaptureOutput, didOutput sampleBuffer: CMSampleBuffer,
                       from connection: AVCaptureConnection) {
        guard let buffer = CMSampleBufferGetImageBuffer(sampleBuffer) else { return }
        CVPixelBufferLockBaseAddress(buffer, .readOnly)
        defer { CVPixelBufferUnlockBaseAddress(buffer, .readOnly) }
        guard let base = CVPixelBufferGetBaseAddress(buffer) else { return }
        let width = CVPixelBufferGetWidth(buffer)
        let height = CVPixelBufferGetHeight(buffer)
        let stride = CVPixelBufferGetBytesPerRow(buffer)
        let bytes = [UInt8](UnsafeRawBufferPointer(start: base, count: stride * height))
        guard let frame = try? PixelFrame(width: width, height: height, bytesPerRow: stride, format: .bgra,
                                          bytes: bytes) else { return }
        // The back camera's buffers are landscape (sensor orientation); the app is portrait-only, so the upright
        // image is the buffer turned 90° clockwise (CGImagePropertyOrientation.right).
        onFrame?(frame, FrameOrientation.right.rotation)
    }
}
#endif
