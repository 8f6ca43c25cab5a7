// Header (and Connect metadata) names that carry our stable error code
// across every wire: RPC errors, the data plane's answers, the proxy's.
export const ERROR_HEADER = "x-damselfly-error";
// The origin's HTTP status, with DF_ERR_SOURCE_STATUS.
export const SOURCE_STATUS_HEADER = "x-damselfly-source-status";
