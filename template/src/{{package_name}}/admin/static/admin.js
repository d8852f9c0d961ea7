// Refreshes the overview's counts every 10 seconds; the page works without it.
"use strict";

async function refreshCounts() {
  const cells = document.querySelectorAll("[data-count]");
  if (cells.length === 0) return;
  try {
    const response = await fetch("/admin/counts", { credentials: "same-origin" });
    if (!response.ok) return;
    const totals = await response.json();
    for (const cell of cells) {
      const count = totals[cell.dataset.count];
      if (count !== undefined) cell.textContent = String(count);
    }
  } catch {
    // The next tick tries again.
  }
}

setInterval(refreshCounts, 10000);
