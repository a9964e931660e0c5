! A client of opacity_jax's SuperNu exports that reads them the way SuperNu's readers do and
! coarsens them onto a group grid the way SuperNu's coarsening does, written for this package
! from the description of SuperNu's public tbxsmod.f (opacity_jax/data/supernu.py, module
! docstring and coarsen_tbxs).
!
!   h5fc -O2 read_supernu.f90 -o read_supernu && ./read_supernu control.in result.out
!
! control.in (list-directed):
!   mode                'text' or 'hdf5'
!   sym                 element symbol as SuperNu's element table spells it, e.g. Nd or U
!   ntemp npts nrho     sizes (27 14900 17 in SuperNu; smaller for quick checks)
!   nn(1:nrho)          text mode: density exponents NN, ascending density (20 ... 4)
!   ng                  number of groups
!   wl(1:ng+1)          group edges as wavelengths [cm], ascending
!   nq                  number of lookup cells
!   tq(1:nq)            cell temperatures [eV]
!   rq(1:nq)            cell (partial) densities [g/cm^3]
!
! result.out, one value per line (es26.16e3, so that a 3-digit exponent keeps its E):
! temp(1:ntemp) [eV]; rho(1:nrho) [g/cm^3]; cap(1:ng, 1:ntemp, 1:nrho) group absorption
! [cm^2/g] in Fortran order (groups by ascending wavelength); sig(1:ntemp, 1:nrho) grey scattering [cm^2/g]; capq(1:ng, 1:nq) lookups.
!
! Text: every file 'Table/op_<sym>_1Em<NN>gcc.table' (lower-case symbol, one letter for a
! one-letter symbol) holds ntemp blocks of: a header read as (word, number, T), one skipped
! line, 7 x npts values read list-directed; anything but end of file after the last block is an
! error. HDF5: 'opacities.h5' with temperature_grid, density_grid, wavelength_grid and one
! dataset per element named by its lower-case symbol held in a character(2) variable and passed
! untrimmed (as SuperNu does), Fortran shape (6, npts, ntemp, nrho); column 1 = T x
! wavelength_grid. As in SuperNu the raw table is held in single precision (real(4)) and group
! means accumulate in single precision.
program read_supernu
  use hdf5
  implicit none
  real(8), parameter :: pc_h = 6.62607015d-27, pc_c = 2.99792458d10, pc_ev = 1.602176634d-12
  character(len=8) :: mode
  character(len=2) :: sym, dsname
  character(len=256) :: control, result
  integer :: ntemp, npts, nrho, ng, nq, u, i, it, ir, ig, ip, ierr
  integer, allocatable :: nn(:)
  real(8), allocatable :: wl(:), tq(:), rq(:), temp(:), rho(:), evinv(:)
  real(4), allocatable :: raw(:, :, :, :)
  real(8), allocatable :: sig(:, :), capq(:, :)
  real(4), allocatable :: cap(:, :, :)
  integer(hid_t) :: fid

  call get_command_argument(1, control)
  call get_command_argument(2, result)
  open(newunit=u, file=trim(control), status='old', action='read')
  read(u, *) mode
  read(u, *) sym
  read(u, *) ntemp, npts, nrho
  allocate(nn(nrho))
  read(u, *) nn
  read(u, *) ng
  allocate(wl(ng + 1))
  read(u, *) wl
  read(u, *) nq
  allocate(tq(nq), rq(nq))
  read(u, *) tq
  read(u, *) rq
  close(u)

  allocate(temp(ntemp), rho(nrho), raw(7, npts, ntemp, nrho))
  dsname = lower(sym)
  if (trim(mode) == 'text') then
    call read_text()
  else if (trim(mode) == 'hdf5') then
    call read_hdf5()
  else
    write(0, *) 'unknown mode: ', mode
    error stop 2
  end if

  ! group edges as inverse photon energies [1/eV], ascending
  allocate(evinv(ng + 1), cap(ng, ntemp, nrho), sig(ntemp, nrho), capq(ng, nq))
  evinv = pc_ev * wl / (pc_h * pc_c)
  do ir = 1, nrho
    do it = 1, ntemp
      call coarsen(raw(:, :, it, ir), cap(:, it, ir), sig(it, ir))
    end do
  end do
  do i = 1, nq
    call lookup(tq(i), rq(i), capq(:, i))
  end do

  open(newunit=u, file=trim(result), status='replace', action='write')
  write(u, '(es26.16e3)') temp
  write(u, '(es26.16e3)') rho
  write(u, '(es26.16e3)') ((( dble(cap(ig, it, ir)), ig = 1, ng), it = 1, ntemp), ir = 1, nrho)
  write(u, '(es26.16e3)') ((sig(it, ir), it = 1, ntemp), ir = 1, nrho)
  write(u, '(es26.16e3)') ((capq(ig, i), ig = 1, ng), i = 1, nq)
  close(u)

contains

  function lower(s) result(out)
    character(len=*), intent(in) :: s
    character(len=len(s)) :: out
    integer :: k
    out = s
    do k = 1, len(s)
      if (s(k:k) >= 'A' .and. s(k:k) <= 'Z') out(k:k) = achar(iachar(s(k:k)) + 32)
    end do
  end function lower

  subroutine read_text()
    character(len=32) :: fname
    character(len=2) :: fnum
    character(len=6) :: word
    real(8) :: number
    integer :: f, jr, jt
    do jr = 1, nrho
      write(fnum, '(i2.2)') nn(jr)
      if (dsname(2:2) == ' ') then
        fname = 'op_' // dsname(1:1) // '_1Em' // fnum // 'gcc.table'
      else
        fname = 'op_' // dsname // '_1Em' // fnum // 'gcc.table'
      end if
      open(newunit=f, file='Table/' // trim(fname), status='old', action='read', iostat=ierr)
      if (ierr /= 0) then
        write(0, *) 'missing file: Table/', trim(fname)
        error stop 3
      end if
      rho(jr) = 10d0**(-nn(jr))
      do jt = 1, ntemp
        read(f, *) word, number, temp(jt)
        read(f, *)
        read(f, *, iostat=ierr) raw(:, :, jt, jr)
        if (ierr /= 0) then
          write(0, *) 'short or malformed block in ', trim(fname)
          error stop 4
        end if
      end do
      read(f, *, iostat=ierr) word
      if (ierr /= -1) then
        write(0, *) 'data after the last block in ', trim(fname)
        error stop 5
      end if
      close(f)
    end do
  end subroutine read_text

  subroutine read_hdf5()
    integer(hid_t) :: did
    integer(hsize_t) :: d1(1), d4(4)
    real(8), allocatable :: wgrid(:), data(:, :, :, :)
    integer :: jt
    call h5open_f(ierr)
    call h5fopen_f('opacities.h5', H5F_ACC_RDONLY_F, fid, ierr)
    if (ierr /= 0) error stop 6
    d1(1) = ntemp
    call read_1d('temperature_grid', temp, d1)
    d1(1) = nrho
    call read_1d('density_grid', rho, d1)
    allocate(wgrid(npts))
    d1(1) = npts
    call read_1d('wavelength_grid', wgrid, d1)
    ! the element dataset, its name in a character(2) passed as it is (untrimmed)
    call h5dopen_f(fid, dsname, did, ierr)
    if (ierr /= 0) then
      write(0, *) 'dataset not found: "', dsname, '"'
      error stop 7
    end if
    allocate(data(6, npts, ntemp, nrho))
    d4 = [integer(hsize_t) :: 6, npts, ntemp, nrho]
    call h5dread_f(did, H5T_NATIVE_DOUBLE, data, d4, ierr)
    if (ierr /= 0) error stop 8
    call h5dclose_f(did, ierr)
    call h5fclose_f(fid, ierr)
    call h5close_f(ierr)
    do jt = 1, ntemp
      raw(1, :, jt, :) = spread(temp(jt) * wgrid, 2, nrho)
    end do
    raw(2:7, :, :, :) = data
  end subroutine read_hdf5

  subroutine read_1d(name, buf, dims)
    character(len=*), intent(in) :: name
    real(8), intent(out) :: buf(:)
    integer(hsize_t), intent(in) :: dims(1)
    integer(hid_t) :: did
    call h5dopen_f(fid, name, did, ierr)
    if (ierr /= 0) then
      write(0, *) 'dataset not found: ', name
      error stop 9
    end if
    call h5dread_f(did, H5T_NATIVE_DOUBLE, buf, dims, ierr)
    call h5dclose_f(did, ierr)
  end subroutine read_1d

  ! number of ascending edges evinv(1:ng+1) at or below x (0 .. ng+1)
  integer function locate(x)
    real(8), intent(in) :: x
    integer :: lo, hi, mid
    lo = 0
    hi = ng + 2
    do while (hi - lo > 1)
      mid = (lo + hi) / 2
      if (evinv(mid) <= x) then
        lo = mid
      else
        hi = mid
      end if
    end do
    locate = lo
  end function locate

  ! SuperNu's coarsening arithmetic on its real(4) raw block: segments from the highest
  ! energy down, overlaps in inverse energy, end values and the three absorption terms in
  ! single precision, single-precision group sums, then times 1 / (group energy width).
  subroutine coarsen(pts, gcap, gsig)
    real(4), intent(in) :: pts(:, :)
    real(4), intent(out) :: gcap(ng)
    real(8), intent(out) :: gsig
    real(8) :: x_short, x_long, x1, x2, w3, w4
    real(4) :: term, vh, vl, c1, c2
    integer :: k1, k2, k, col
    gcap = 0.
    gsig = dble(sum(pts(7, :)) / npts)
    do ip = npts - 1, 1, -1
      x_short = 1d0 / dble(pts(1, ip + 1))
      x_long = 1d0 / dble(pts(1, ip))
      k1 = max(locate(x_short), 1)
      k2 = min(locate(x_long), ng)
      if (k2 == 0 .or. k1 == ng + 1) cycle
      do k = k1, k2
        x1 = max(x_short, evinv(k))
        x2 = min(x_long, evinv(k + 1))
        if (x2 <= x1) cycle
        ! weights of the low-energy point at x1 and of the high-energy point at x2
        w3 = x_long * (x1 - x_short) / (x1 * (x_long - x_short))
        w4 = x_short * (x_long - x2) / (x2 * (x_long - x_short))
        term = 0.
        do col = 4, 6
          vh = pts(col, ip + 1)
          vl = pts(col, ip)
          c1 = vh * sngl(1d0 - w3) + vl * sngl(w3)
          c2 = vh * sngl(w4) + vl * sngl(1d0 - w4)
          term = term + .5 * sngl((x2 - x1) / (x1 * x2)) * (c1 + c2)
        end do
        gcap(k) = gcap(k) + term
      end do
    end do
    gcap = gcap * sngl(evinv(2:) * evinv(:ng) / (evinv(2:) - evinv(:ng)))
  end subroutine coarsen

  ! bilinear in T and log rho on the coarsened table, clamped to its edges
  subroutine lookup(t, r, out)
    real(8), intent(in) :: t, r
    real(8), intent(out) :: out(ng)
    real(8) :: tc, rc, ft, fr
    integer :: jt, jr
    tc = min(max(t, temp(1)), temp(ntemp))
    rc = min(max(r, rho(1)), rho(nrho))
    jt = 1
    do while (jt < ntemp - 1 .and. temp(jt + 1) <= tc)
      jt = jt + 1
    end do
    jr = 1
    do while (jr < nrho - 1 .and. rho(jr + 1) <= rc)
      jr = jr + 1
    end do
    ft = (tc - temp(jt)) / (temp(jt + 1) - temp(jt))
    fr = log(rc / rho(jr)) / log(rho(jr + 1) / rho(jr))
    out = (1d0 - ft) * (1d0 - fr) * cap(:, jt, jr) + ft * (1d0 - fr) * cap(:, jt + 1, jr) &
        + (1d0 - ft) * fr * cap(:, jt, jr + 1) + ft * fr * cap(:, jt + 1, jr + 1)
  end subroutine lookup

end program read_supernu
