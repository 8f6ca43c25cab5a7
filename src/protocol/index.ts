// The wire contract between components. Components import each other only
// through what is exported here.
export * from "./gen/damselfly/common/v1/common_pb.js";
export * as schedulerv1 from "./gen/damselfly/scheduler/v1/scheduler_pb.js";
export * as daemonv1 from "./gen/damselfly/daemon/v1/daemon_pb.js";
export { toConnectError, fromConnectError, toErrorDetail, fromErrorDetail } from "./errors.js";
export { createRpcServer, type RpcServer } from "./server.js";
export { grpcBidiRoute, grpcUnaryRoute, type BidiCall, type BidiSink, type FastDecoder, type FastRoute } from "./grpc-fast.js";
export { decodeAnnouncePeerRequest } from "./fast/announce-peer-decoder.js";
export { encodeNormalTask, type CandidateSource, type TaskInfoSource } from "./fast/normal-task-encoder.js";
export { createRpcTransport } from "./transport.js";
export * from "./data-plane.js";
export { encodeEnvelope, EnvelopeReader, EnvelopeTooLargeError, type EnvelopeSink } from "./envelope.js";
export { blobDownload, downloadTaskId } from "./downloads.js";
export { CACHE_URL, cacheDigest, cacheDownload, cacheTaskId, isCacheDigestOf, isCacheDownloadOf, isCacheUrl } from "./cache-task.js";
export * as managerv1 from "./gen/damselfly/manager/v1/manager_pb.js";
export { createManagerTransport } from "./transport.js";
export { checkClusterToken, CLUSTER_TOKEN_ENV, CLUSTER_TOKEN_HEADER, clusterTokenHeaders } from "./cluster-token.js";
