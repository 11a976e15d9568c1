// The live Inbox: new messages appear at the top of the table as they
// arrive, announced to screen readers. Without this script (or without
// EventSource) the page works as before; a reload shows new mail.
(function () {
  var live = document.getElementById('live');
  if (!live || !window.EventSource) return;
  var table = document.getElementById('inbox-table');
  var empty = document.getElementById('inbox-empty');
  var tbody = table && table.querySelector('tbody');
  var status = document.getElementById('live-status');
  var expired = document.getElementById('live-expired');
  if (!tbody || !status) return;
  var source = new EventSource(live.getAttribute('data-events'));

  function shown() {
    var hrefs = {};
    tbody.querySelectorAll('a[href^="/mail/"]').forEach(function (a) {
      hrefs[a.getAttribute('href')] = true;
    });
    return hrefs;
  }

  source.addEventListener('rows', function (event) {
    var data;
    try { data = JSON.parse(event.data); } catch (e) { return; }
    // Rows rendered by the server, every value escaped there.
    var incoming = document.createElement('tbody');
    incoming.innerHTML = data.html || '';
    var already = shown();
    var rows = Array.prototype.slice.call(incoming.children).reverse();
    var added = 0;
    rows.forEach(function (row) {
      var link = row.querySelector('a[href^="/mail/"]');
      if (link && already[link.getAttribute('href')]) return;
      row.classList.add('arrived');
      tbody.insertBefore(row, tbody.firstChild);
      added += 1;
    });
    if (!added) return;
    // The Inbox shows the ten most recent.
    while (tbody.rows.length > 10) tbody.deleteRow(tbody.rows.length - 1);
    table.hidden = false;
    if (empty) empty.hidden = true;
    status.textContent = data.announce || (added + ' new messages');
    document.dispatchEvent(new CustomEvent('rows-added'));
  });

  source.addEventListener('expired', function () {
    source.close();
    if (expired) expired.hidden = false;
    status.textContent = 'Your sign-in has expired, so new mail no longer appears. Reload the page to sign in again.';
  });
})();
