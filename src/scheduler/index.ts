export { Scheduler, type SchedulerOptions } from "./scheduler.js";
export { selectParents, scoreParent, isEligibleParent } from "./scheduling/parent-selector.js";
export { pickSeedHost } from "./scheduling/seed-trigger.js";
