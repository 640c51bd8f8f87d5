package runtime

// Abandon stops the worker at once without touching the database, as if
// its process had died: its tasks stay claimed until their leases expire.
func (w *Worker) Abandon() { close(w.abandon) }
