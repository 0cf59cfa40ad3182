package agent

// QueueTries is how often queued requests tried their lease again.
func QueueTries(a *Agent) int64 { return a.queueTries.Load() }
