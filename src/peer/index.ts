export { Daemon, type DaemonOptions, type DaemonEndpoints } from "./daemon.js";
