// The Kumar-Ross lower bound on the time to get a file of S bits from one
// server of upload B to N peers of download d and upload u:
//   T* = max(S/B, S/d, N*S/(B + N*u))
// (the server must send every bit once; each peer must receive every bit;
// N*S bits must be uploaded by the server and the peers together).
// Rates are link rates: TCP over Ethernet gets ~95.6 % of them, so a perfect
// system on this testbed would still take ~1.05 T*.
export interface Bound {
  tStarS: number;
  serverS: number;
  peerDownloadS: number;
  swarmUploadS: number;
  // Which term is T*.
  limit: "server upload" | "peer download" | "swarm upload";
  // N*S/B: what a client-server distribution (every peer from the origin) needs.
  clientServerS: number;
}

export function kumarRoss(sizeBytes: number, n: number, originBps: number, peerDownBps: number, peerUpBps: number): Bound {
  const S = sizeBytes * 8;
  const serverS = S / originBps;
  const peerDownloadS = S / peerDownBps;
  const swarmUploadS = (n * S) / (originBps + n * peerUpBps);
  const tStarS = Math.max(serverS, peerDownloadS, swarmUploadS);
  const limit = tStarS === peerDownloadS ? "peer download" : tStarS === serverS ? "server upload" : "swarm upload";
  return { tStarS, serverS, peerDownloadS, swarmUploadS, limit, clientServerS: Math.max((n * S) / originBps, peerDownloadS) };
}

// A run's time limit: 10 T* + 60 s, but never less than twice what the
// client-server distribution needs (so native mode is not cut short at large N).
export function runTimeoutS(b: Bound): number {
  return Math.max(10 * b.tStarS, 2 * b.clientServerS) + 60;
}
