/** The current time as MITPO puts it in X-MITPO-Timestamp: whole seconds since the epoch. */
export const nowInSeconds = () => Math.floor(Date.now() / 1000);
