// Progressive enhancement: show message times in the reader's own time zone.
// Without this script the server's UTC times stay, and the page says so.
// Rows that arrive later (the live Inbox) ask for it again with `rows-added`.
(function () {
  if (!window.Intl) return;
  var day = function (d) { return new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime(); };
  var clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  var dated = new Intl.DateTimeFormat('en-GB', { weekday: 'short', day: 'numeric', month: 'short' });
  var older = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'short', year: 'numeric' });
  function localize() {
    var times = document.querySelectorAll('time[data-local]');
    if (!times.length) return;
    var now = new Date();
    times.forEach(function (t) {
      var d = new Date(t.getAttribute('datetime'));
      if (isNaN(d)) return;
      var days = Math.round((day(now) - day(d)) / 86400000);
      t.textContent = days === 0 ? 'Today ' + clock.format(d)
        : days === 1 ? 'Yesterday ' + clock.format(d)
        : d.getFullYear() === now.getFullYear() ? dated.format(d).replace(',', '') : older.format(d);
    });
    var note = document.getElementById('time-zone-note');
    if (note) note.textContent = 'Times are in your time zone.';
  }
  localize();
  document.addEventListener('rows-added', localize);
})();
