export { Manager, type ManagerOptions } from "./manager.js";
