// A CRI client of one call, ImageService.PullImage (what the kubelet sends to
// containerd to pull a pod's image), over containerd's gRPC unix socket:
// plain HTTP/2 with gRPC framing and the two protobuf fields it needs encoded
// by hand (runtime.v1 PullImageRequest.image.image = 1.1, response image_ref = 1).
import { connect, constants } from "node:http2";
import { connect as netConnect } from "node:net";

export interface CriPullResult {
  // gRPC status (0: OK).
  status: number;
  message: string;
  // PullImageResponse.image_ref (the image ID) when status is 0.
  imageRef?: string;
}

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}

function lengthDelimited(field: number, payload: Buffer): Buffer {
  return Buffer.concat([varint((field << 3) | 2), varint(payload.length), payload]);
}

// The first length-delimited field 1 of a message, as text.
function readField1(msg: Buffer): string | undefined {
  if (msg.length < 2 || msg[0] !== 0x0a) return undefined;
  let len = 0;
  let shift = 0;
  let i = 1;
  for (; i < msg.length && i < 6; i++) {
    len |= (msg[i]! & 0x7f) << shift;
    shift += 7;
    if ((msg[i]! & 0x80) === 0) break;
  }
  return msg.subarray(i + 1, i + 1 + len).toString("utf8");
}

export function criPullImage(socket: string, image: string, timeoutMs = 120_000): Promise<CriPullResult> {
  const request = lengthDelimited(1, lengthDelimited(1, Buffer.from(image)));
  const frame = Buffer.alloc(5 + request.length);
  frame.writeUInt32BE(request.length, 1);
  request.copy(frame, 5);
  return new Promise((resolve, reject) => {
    const session = connect("http://localhost", { createConnection: () => netConnect(socket) });
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error(`CRI PullImage ${image}: no answer within ${timeoutMs}ms`));
    }, timeoutMs);
    session.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    const stream = session.request({
      [constants.HTTP2_HEADER_METHOD]: "POST",
      [constants.HTTP2_HEADER_PATH]: "/runtime.v1.ImageService/PullImage",
      "content-type": "application/grpc",
      te: "trailers",
    });
    const chunks: Buffer[] = [];
    let headers: Record<string, unknown> = {};
    stream.on("response", (h) => (headers = h));
    stream.on("trailers", (h) => (headers = { ...headers, ...h }));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      clearTimeout(timer);
      session.close();
      const body = Buffer.concat(chunks);
      const status = Number(headers["grpc-status"] ?? 2);
      const message = decodeURIComponent(String(headers["grpc-message"] ?? ""));
      const imageRef = status === 0 && body.length >= 5 ? readField1(body.subarray(5, 5 + body.readUInt32BE(1))) : undefined;
      resolve({ status, message, ...(imageRef !== undefined ? { imageRef } : {}) });
    });
    stream.end(frame);
  });
}
